-- lineage_graph: which node feeds which, across pipelines (OpenLineage) and metalake's own runs, models, deployments?
--
-- One row per distinct edge (source_node, target_node, edge_type). Node ids: dataset:NAMESPACE/NAME (metalake
-- datasets are dataset:metalake/NAME), job:NAMESPACE/NAME, run:RUN_ID (metalake runs), model:NAME/VERSION,
-- deployment:ENVIRONMENT/DEPLOYMENT_ID. Edges come from:
--   lineage_edges      OpenLineage: input dataset -> job -> output dataset (column edges are left out)
--   run_inputs         dataset:metalake/NAME -> run:ID (run.log_input)
--   dataset_versions   run:ID -> dataset:metalake/NAME (versions registered with a run_id, not from OpenLineage)
--   model_versions     run:ID -> model:NAME/VERSION
--   deployments        model:NAME/VERSION -> deployment:ENVIRONMENT/ID (start events)
-- lake.lineage.upstream(node) and downstream(node) walk this view with a recursive query.
--
-- Columns:
--   source_node      where the edge starts
--   target_node      where it ends
--   edge_type        input, output, produced_by or deployed_as
--   origin           openlineage or metalake
--   runs             how many distinct runs observed the edge
--   last_run_id      run that observed it last
--   source_version   version of the source when last observed (dataset or model version), when known
--   target_version   version of the target when last observed, when known
--   last_seen        when it was last observed
--
-- metalake: materialize
WITH openlineage AS (
    SELECT
        source_node,
        target_node,
        edge_type,
        'openlineage' AS origin,
        count(DISTINCT run_id) AS runs,
        -- ties in event time (runs of one schedule) go to the greater run id, whatever the arrival order
        arg_max(run_id, {'t': event_time, 'r': coalesce(run_id, '')}) AS last_run_id,
        arg_max(source_version, {'t': event_time, 'r': coalesce(run_id, '')}) AS source_version,
        arg_max(target_version, {'t': event_time, 'r': coalesce(run_id, '')}) AS target_version,
        max(event_time) AS last_seen
    FROM lineage_edges
    WHERE edge_type <> 'column'
    GROUP BY source_node, target_node, edge_type
),
run_reads AS (
    SELECT
        'dataset:metalake/' || dataset AS source_node,
        'run:' || run_id AS target_node,
        'input' AS edge_type,
        'metalake' AS origin,
        1 AS runs,
        run_id AS last_run_id,
        CAST(max(version) AS VARCHAR) AS source_version,
        NULL AS target_version,
        max(recorded_at) AS last_seen
    FROM run_inputs
    GROUP BY dataset, run_id
),
run_writes AS (
    SELECT
        'run:' || run_id AS source_node,
        'dataset:metalake/' || dataset AS target_node,
        'output' AS edge_type,
        'metalake' AS origin,
        1 AS runs,
        run_id AS last_run_id,
        NULL AS source_version,
        CAST(max(version) AS VARCHAR) AS target_version,
        max(recorded_at) AS last_seen
    FROM dataset_versions
    WHERE run_id IS NOT NULL AND coalesce(source_format, '') <> 'openlineage'
    GROUP BY dataset, run_id
),
trained AS (
    SELECT
        'run:' || run_id AS source_node,
        'model:' || model || '/' || version AS target_node,
        'produced_by' AS edge_type,
        'metalake' AS origin,
        1 AS runs,
        run_id AS last_run_id,
        NULL AS source_version,
        CAST(version AS VARCHAR) AS target_version,
        min(recorded_at) AS last_seen
    FROM model_versions
    WHERE run_id IS NOT NULL
    GROUP BY model, version, run_id
),
deployed AS (
    SELECT
        'model:' || model || '/' || version AS source_node,
        'deployment:' || coalesce(environment, 'unknown') || '/' || deployment_id AS target_node,
        'deployed_as' AS edge_type,
        'metalake' AS origin,
        1 AS runs,
        any_value(pipeline_run) AS last_run_id,
        CAST(version AS VARCHAR) AS source_version,
        NULL AS target_version,
        max("at") AS last_seen
    FROM deployments
    WHERE event_type = 'start' AND model IS NOT NULL AND version IS NOT NULL
    GROUP BY model, version, environment, deployment_id
)
SELECT * FROM openlineage
UNION ALL SELECT * FROM run_reads
UNION ALL SELECT * FROM run_writes
UNION ALL SELECT * FROM trained
UNION ALL SELECT * FROM deployed
