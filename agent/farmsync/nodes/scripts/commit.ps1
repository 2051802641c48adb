# commit {run_id, items: [{path, expected_sha256, staged_sha256}]}
# Checks everything, prints {"armed": true}, waits for the next stdin line: COMMIT replaces
# every live file (keeping a byte-identical backup, created exclusively) -> {committed};
# ABORT or EOF -> {aborted}. A backup of the run that already exists is never replaced.
$ErrorActionPreference = 'Stop'

function Test-FarmsyncCommitReady {
    # Staging files hold what was staged and live files are still what was read.
    param([object[]]$Items, [string]$RunId)
    foreach ($item in $Items) {
        $path = [string]$item.path
        $target = Resolve-FarmsyncPath -Path $path
        $staging = Get-FarmsyncStagingPath -Target $target -RunId $RunId
        if (-not (Test-Path -LiteralPath $staging -PathType Leaf)) {
            throw (New-FarmsyncError 'not-found' 'staging file missing (stage first)' $staging)
        }
        $staged = Read-FarmsyncBytes -Target $staging -Shown $staging
        if ((Get-FarmsyncSha256 -Bytes $staged) -ne ([string]$item.staged_sha256).ToLowerInvariant()) {
            throw (New-FarmsyncError 'changed-since-read' 'staging file changed since staged' $staging)
        }
        $live = Read-FarmsyncBytes -Target $target -Shown $path
        if ((Get-FarmsyncSha256 -Bytes $live) -ne ([string]$item.expected_sha256).ToLowerInvariant()) {
            throw (New-FarmsyncError 'changed-since-read' 'live file changed since it was read' $path)
        }
        $backup = Get-FarmsyncBackupPath -Target $target -RunId $RunId
        if (Test-Path -LiteralPath $backup) {
            throw (New-FarmsyncError 'backup-exists' 'this run''s backup already exists (two paths reach one file?); it was not replaced' $backup)
        }
    }
}

function Invoke-FarmsyncOp {
    param($Arguments)
    $runId = Assert-FarmsyncRunId -RunId $Arguments.run_id
    $items = @($Arguments.items)
    Assert-FarmsyncUnique -Paths @($items | ForEach-Object { [string]$_.path })
    Test-FarmsyncCommitReady -Items $items -RunId $runId
    Write-FarmsyncLine -Object @{ armed = $true }
    $word = [Console]::In.ReadLine()
    if ($null -eq $word -or $word.Trim() -ne 'COMMIT') {
        return @{ aborted = $true }
    }
    # Again at release: narrows the window between arm and commit.
    Test-FarmsyncCommitReady -Items $items -RunId $runId
    $done = [System.Collections.Generic.List[object]]::new()
    $committed = [System.Collections.Generic.List[string]]::new()
    $current = $null
    try {
        foreach ($item in $items) {
            $current = [string]$item.path
            $target = Resolve-FarmsyncPath -Path $current
            $staging = Get-FarmsyncStagingPath -Target $target -RunId $runId
            $backup = Get-FarmsyncBackupPath -Target $target -RunId $runId
            # The backup is a new file (CreateNew, write-through) holding the bytes just
            # checked: ReplaceFile would replace an existing backup, and one already there
            # means a second path reaches this file, so its original must stay.
            if (Test-Path -LiteralPath $backup) {
                throw (New-FarmsyncError 'backup-exists' 'this run''s backup already exists (two paths reach one file?); it was not replaced' $backup)
            }
            $live = Read-FarmsyncBytes -Target $target -Shown $current
            if ((Get-FarmsyncSha256 -Bytes $live) -ne ([string]$item.expected_sha256).ToLowerInvariant()) {
                throw (New-FarmsyncError 'changed-since-read' 'live file changed since it was read' $current)
            }
            Write-FarmsyncNewFile -Path $backup -Bytes $live -LikePath $target -Exclusive
            try {
                # [NullString]: no backup from ReplaceFile itself (ours exists already).
                [System.IO.File]::Replace($staging, $target, [NullString]::Value)
            } catch {
                # Never leave the live path empty: put the original back from our backup.
                if (-not (Test-Path -LiteralPath $target)) {
                    Restore-FarmsyncBackup -Backup $backup -Target $target -RunId $runId
                }
                throw
            }
            $done.Add(@{ Target = $target; Backup = $backup })
            $committed.Add($current)
        }
    } catch {
        $failure = Get-FarmsyncErrorInfo -ErrorRecord $_
        for ($i = $done.Count - 1; $i -ge 0; $i--) {
            try {
                Restore-FarmsyncBackup -Backup $done[$i].Backup -Target $done[$i].Target -RunId $runId
            } catch {
                [Console]::Error.WriteLine('farmsync: could not restore ' + $done[$i].Target)
            }
        }
        if ($null -eq $failure.path) { $failure.path = $current }
        throw (New-FarmsyncError $failure.kind $failure.detail $failure.path)
    }
    return @{ committed = $committed.ToArray() }
}
