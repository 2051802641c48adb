# commit {run_id, items: [{path, expected_sha256, staged_sha256}]}
# Checks everything, prints {"armed": true}, waits for the next stdin line: exactly COMMIT
# (case-sensitive) replaces every live file (keeping a byte-identical backup, created
# exclusively) -> {committed}; anything else, or EOF -> {aborted}. A backup of the run that
# already exists is never replaced. A live file another process holds for a moment is
# retried, bounded, and the retries are reported in "warnings".
$ErrorActionPreference = 'Stop'

# Win32 errors worth a retry (protocol.BUSY_WIN32_ERRORS): sharing violation, lock
# violation, unable to remove replaced, unable to move replacement.
$FarmsyncBusyCodes = @(32, 33, 1175, 1176)
$FarmsyncReplaceAttempts = 8
$FarmsyncReplaceFirstDelayMs = 50

function Test-FarmsyncCommitReady {
    # Staging files hold what was staged and live files are still what was read.
    param([object[]]$Items, [string]$RunId)
    foreach ($item in $Items) {
        $path = [string]$item.path
        $target = Resolve-FarmsyncPath -Path $path
        Assert-FarmsyncNotLink -Target $target -Shown $path
        $staging = Get-FarmsyncStagingPath -Target $target -RunId $RunId
        if (-not [System.IO.File]::Exists($staging)) {
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
        if ([System.IO.File]::Exists($backup) -or [System.IO.Directory]::Exists($backup)) {
            throw (New-FarmsyncError 'backup-exists' 'this run''s backup already exists (two paths reach one file?); it was not replaced' $backup)
        }
    }
}

function Invoke-FarmsyncReplace {
    # Puts the staging file in place of the live one (ReplaceFile; the backup is ours,
    # made before), retried while another process holds the file (same loop as
    # replace_when_free in agent.py).
    param([string]$Staging, [string]$Target, [string]$Backup, [string]$RunId, [string]$Shown)
    $delay = $FarmsyncReplaceFirstDelayMs
    for ($attempt = 1; $attempt -le $FarmsyncReplaceAttempts; $attempt++) {
        try {
            # [NullString]: no backup from ReplaceFile itself (ours exists already).
            [System.IO.File]::Replace($Staging, $Target, [NullString]::Value)
            if ($attempt -gt 1) {
                Add-FarmsyncWarning -Text ($Shown + ': replaced after ' + ($attempt - 1) + ' retries (file in use)')
            }
            return
        } catch {
            $record = $_
            # Never leave the live path empty: put the original back from our backup.
            if (-not [System.IO.File]::Exists($Target)) {
                Restore-FarmsyncBackup -Backup $Backup -Target $Target -RunId $RunId
            }
            $code = Get-FarmsyncWin32Code -Exception (Get-FarmsyncInnerException -Exception $record.Exception)
            if ($FarmsyncBusyCodes -notcontains $code) { throw $record }
            if ($attempt -eq $FarmsyncReplaceAttempts) {
                throw (New-FarmsyncError 'remote-error' ('live file still in use by another process after ' + $attempt + ' attempts') $Shown)
            }
            [System.Threading.Thread]::Sleep($delay)
            $delay = $delay * 2
        }
    }
}

function Invoke-FarmsyncOp {
    param($Arguments)
    $runId = Assert-FarmsyncRunId -RunId $Arguments.run_id
    $items = $Arguments.items
    $paths = [System.Collections.Generic.List[string]]::new()
    foreach ($item in $items) { $paths.Add($item.path) }
    Assert-FarmsyncUnique -Paths $paths.ToArray()
    Test-FarmsyncCommitReady -Items $items -RunId $runId
    Write-FarmsyncLine -Object @{ armed = $true }
    $word = [Console]::In.ReadLine()
    if ($null -eq $word -or $word -cne 'COMMIT') {
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
            if ([System.IO.File]::Exists($backup) -or [System.IO.Directory]::Exists($backup)) {
                throw (New-FarmsyncError 'backup-exists' 'this run''s backup already exists (two paths reach one file?); it was not replaced' $backup)
            }
            $live = Read-FarmsyncBytes -Target $target -Shown $current
            if ((Get-FarmsyncSha256 -Bytes $live) -ne ([string]$item.expected_sha256).ToLowerInvariant()) {
                throw (New-FarmsyncError 'changed-since-read' 'live file changed since it was read' $current)
            }
            Write-FarmsyncNewFile -Path $backup -Bytes $live -LikePath $target -Exclusive
            Invoke-FarmsyncReplace -Staging $staging -Target $target -Backup $backup -RunId $runId -Shown $current
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
