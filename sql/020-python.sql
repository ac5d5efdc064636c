-- PL/Python health: which interpreter runs the functions and whether what they import is there.
CREATE OR REPLACE FUNCTION flywheel.python_environment() RETURNS jsonb
LANGUAGE plpython3u
SET search_path TO pg_catalog, pg_temp
AS $python$ # plpython: environment.describe $python$;
COMMENT ON FUNCTION flywheel.python_environment() IS
    'PL/Python health: the interpreter that runs the flywheel''s Python and whether the packages it imports are there.';
