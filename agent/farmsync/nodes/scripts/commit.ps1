# commit {run_id, items: [{path, expected_sha256, staged_sha256}]}
# Checks everything, prints {"armed": true}, waits for the next stdin line: exactly COMMIT
# (case-sensitive) replaces every live file (keeping a byte-identical backup, created
# exclusively) -> {committed}; anything else, or EOF -> {aborted}. A backup of the run that
# already exists is never replaced. A live file another process holds for a moment is
# retried, bounded, and the retries are reported in "warnings" (Test-FarmsyncCommitReady,
# Invoke-FarmsyncCommitItems, common.ps1).
$ErrorActionPreference = 'Stop'

function Invoke-FarmsyncOp {
    param($Arguments)
    $runId = Assert-FarmsyncRunId -RunId $Arguments.run_id
    $items = $Arguments.items
    Assert-FarmsyncUnique -Paths (Get-FarmsyncItemPaths -Items $items)
    Test-FarmsyncCommitReady -Items $items -RunId $runId
    Write-FarmsyncLine -Object @{ armed = $true }
    $word = [Console]::In.ReadLine()
    if ($null -eq $word -or $word -cne 'COMMIT') {
        return @{ aborted = $true }
    }
    $committed = Invoke-FarmsyncCommitItems -Items $items -RunId $runId
    return @{ committed = $committed }
}
