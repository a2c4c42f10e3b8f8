-- Spill to a folder inside the staging area so a failed run leaves nothing behind.
SET temp_directory = {{ temp_dir }};
