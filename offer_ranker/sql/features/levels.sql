-- The most frequent levels of one categorical feature in the training frame.
SELECT {{ column }} AS level, count(*) AS n
FROM read_parquet({{ path }})
WHERE {{ column }} IS NOT NULL
GROUP BY 1
ORDER BY n DESC, level
LIMIT {{ limit }};
