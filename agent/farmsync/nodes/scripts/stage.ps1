# stage {run_id, items: [{path, content_b64, expected_sha256}]} -> {staged: [path..]}
# All or nothing: every live hash is checked before anything is written; on any failure the
# staging files written so far are removed. A live file that is a symbolic link or junction
# is refused, as the twin refuses symlinks.
$ErrorActionPreference = 'Stop'

function ConvertFrom-FarmsyncBase64 {
    param([string]$Text)
    try {
        $bytes = [System.Convert]::FromBase64String($Text)
    } catch {
        throw (New-FarmsyncError 'protocol' 'content_b64 is not base64' $null)
    }
    return , $bytes
}

function Invoke-FarmsyncOp {
    param($Arguments)
    $runId = Assert-FarmsyncRunId -RunId $Arguments.run_id
    $items = $Arguments.items
    $paths = [System.Collections.Generic.List[string]]::new()
    foreach ($item in $items) { $paths.Add($item.path) }
    Assert-FarmsyncUnique -Paths $paths.ToArray()
    $plan = [System.Collections.Generic.List[object]]::new()
    foreach ($item in $items) {
        $path = [string]$item.path
        $target = Resolve-FarmsyncPath -Path $path
        Assert-FarmsyncNotLink -Target $target -Shown $path
        $live = Read-FarmsyncBytes -Target $target -Shown $path
        if ((Get-FarmsyncSha256 -Bytes $live) -ne ([string]$item.expected_sha256).ToLowerInvariant()) {
            throw (New-FarmsyncError 'changed-since-read' 'live file changed since it was read' $path)
        }
        $bytes = ConvertFrom-FarmsyncBase64 -Text $item.content_b64
        $plan.Add(@{ Path = $path; Target = $target; Bytes = $bytes })
    }
    $written = [System.Collections.Generic.List[string]]::new()
    $staged = [System.Collections.Generic.List[string]]::new()
    try {
        foreach ($step in $plan) {
            $staging = Get-FarmsyncStagingPath -Target $step.Target -RunId $runId
            $written.Add($staging)
            Write-FarmsyncNewFile -Path $staging -Bytes $step.Bytes -LikePath $step.Target
            $back = Read-FarmsyncBytes -Target $staging -Shown $staging
            if ((Get-FarmsyncSha256 -Bytes $back) -ne (Get-FarmsyncSha256 -Bytes $step.Bytes)) {
                throw (New-FarmsyncError 'verify-mismatch' 'staging file read back differs' $staging)
            }
            $staged.Add($step.Path)
        }
    } catch {
        $failure = Get-FarmsyncErrorInfo -ErrorRecord $_
        foreach ($staging in $written) { $null = Remove-FarmsyncFile -Path $staging }
        if ($null -eq $failure.path) { $failure.path = $written[$written.Count - 1] }
        throw (New-FarmsyncError $failure.kind $failure.detail $failure.path)
    }
    return @{ staged = $staged.ToArray() }
}
