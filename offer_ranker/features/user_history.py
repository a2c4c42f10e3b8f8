from offer_ranker.features.base import Feature

GROUP = "user_history"
_N, _L = "numeric", "lifetime"

FEATURES = (
    Feature("user_requests", "user", _N, _L, "How many offer pages the user saw before.", GROUP),
    Feature("user_impressions", "user", _N, _L, "How many offers the user was shown before.", GROUP),
    Feature("user_clicks", "user", _N, _L, "How many offers the user clicked before.", GROUP),
    Feature("user_conversions", "user", _N, _L, "How many offers the user converted on before.", GROUP),
    Feature("user_ctr", "user", _N, _L,
            "The user's click rate so far, pulled towards the typical user's rate when they are new.", GROUP),
    Feature("user_is_new", "user", _N, _L, "1 if this is the user's first offer page, else 0.", GROUP),
    Feature("user_hours_since_last_visit", "user", _N, _L, "Hours since the user last saw an offer page.", GROUP),
    Feature("user_hours_since_last_click", "user", _N, _L, "Hours since the user last clicked an offer.", GROUP),
    Feature("user_days_since_signup", "user", _N, "at request", "Days since the user signed up.", GROUP),
)
