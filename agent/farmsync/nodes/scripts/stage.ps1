# stage {run_id, items: [{path, content_b64, expected_sha256}]} -> {staged: [path..]}
# All or nothing: every live hash is checked before anything is written; on any failure the
# staging files written so far are removed. A live file that is a symbolic link or junction
# is refused, as the twin refuses symlinks (Invoke-FarmsyncStageItems, common.ps1).
$ErrorActionPreference = 'Stop'

function Invoke-FarmsyncOp {
    param($Arguments)
    $runId = Assert-FarmsyncRunId -RunId $Arguments.run_id
    $done = Invoke-FarmsyncStageItems -Items $Arguments.items -RunId $runId
    return @{ staged = $done.Staged }
}
