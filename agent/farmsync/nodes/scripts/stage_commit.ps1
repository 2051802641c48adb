# stage_commit {run_id, items: [{path, content_b64, expected_sha256, staged_sha256}],
# keep_backups} -> {committed, files, removed} or {aborted}
# stage, arm, release, verify and clean up in one request of a session: stage as stage does,
# check as commit does before it arms (a failed check removes the staging files this request
# wrote), print {"armed": true} and read the next stdin line. Exactly COMMIT (case-sensitive)
# releases as commit does, reads every live file back (read's entries without content) and
# cleans up as cleanup does (a failure there is a warning: the commit stands). Anything else,
# or EOF: the staging files this request wrote are removed -> {aborted}.
$ErrorActionPreference = 'Stop'

function Remove-FarmsyncStagedFiles {
    # The staging files this request wrote, best effort (as the twin): a later cleanup or
    # rollback removes one that stays.
    param([string[]]$Paths)
    foreach ($staging in $Paths) {
        try {
            $null = Remove-FarmsyncFile -Path $staging
        } catch {
            [Console]::Error.WriteLine('farmsync: could not remove ' + $staging)
        }
    }
}

function Invoke-FarmsyncOp {
    param($Arguments)
    # keep_backups first: refused before anything is written, as cleanup would refuse it after.
    $keep = Assert-FarmsyncKeepBackups -Keep $Arguments.keep_backups
    $runId = Assert-FarmsyncRunId -RunId $Arguments.run_id
    $items = $Arguments.items
    $written = (Invoke-FarmsyncStageItems -Items $items -RunId $runId).Written
    try {
        Test-FarmsyncCommitReady -Items $items -RunId $runId
        Write-FarmsyncLine -Object @{ armed = $true }
        $word = [Console]::In.ReadLine()
    } catch {
        $failure = Get-FarmsyncErrorInfo -ErrorRecord $_
        Remove-FarmsyncStagedFiles -Paths $written
        throw (New-FarmsyncError $failure.kind $failure.detail $failure.path)
    }
    if ($null -eq $word -or $word -cne 'COMMIT') {
        Remove-FarmsyncStagedFiles -Paths $written
        return @{ aborted = $true }
    }
    $committed = Invoke-FarmsyncCommitItems -Items $items -RunId $runId
    # Verify: the files as they are now, so the controller needs no second read.
    $files = [System.Collections.Generic.List[object]]::new()
    foreach ($item in $items) {
        $files.Add((Read-FarmsyncState -Path $item.path -WithoutContent))
    }
    $removed = @()
    try {
        $removed = Invoke-FarmsyncCleanupPaths -Paths (Get-FarmsyncItemPaths -Items $items) -RunId $runId -Keep $keep
    } catch {
        # The commit stands; what is left is for the next cleanup.
        $info = Get-FarmsyncErrorInfo -ErrorRecord $_
        Add-FarmsyncWarning -Text ('cleanup: ' + $info.kind + ': ' + $info.detail)
    }
    return @{ committed = $committed; files = $files.ToArray(); removed = $removed }
}
