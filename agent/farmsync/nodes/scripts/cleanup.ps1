# cleanup {run_id, paths, keep_backups} -> {removed}
# Removes the run's staging and temp files, and per path every backup beyond the newest
# keep_backups by run id (like the IIS configuration history, 10 by default on the
# controller), never the backup of the run in progress. keep_backups is required (checked
# against the argument table): a missing value is a protocol error, never 0
# (Invoke-FarmsyncCleanupPaths, common.ps1).
$ErrorActionPreference = 'Stop'

function Invoke-FarmsyncOp {
    param($Arguments)
    $runId = Assert-FarmsyncRunId -RunId $Arguments.run_id
    $keep = Assert-FarmsyncKeepBackups -Keep $Arguments.keep_backups
    $removed = Invoke-FarmsyncCleanupPaths -Paths $Arguments.paths -RunId $runId -Keep $keep
    return @{ removed = $removed }
}
