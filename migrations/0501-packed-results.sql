-- _evaluate returns where each trace's results sit, for the packed insert-path results.
DROP FUNCTION IF EXISTS flywheel._evaluate(text, text[], bigint[], text[], text[], text[], text[], text[], text[],
    text[], text[], double precision[], integer[], integer[], double precision[], text[]);
