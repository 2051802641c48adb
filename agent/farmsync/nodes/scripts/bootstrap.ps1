# farmsync node agent bootstrap: the only script on the command line (-EncodedCommand).
# It reads line 1 of stdin, a base64 JSON request {v, op, script, args}, loads the op script
# it carries (common.ps1 + <op>.ps1) and runs it; every value stays in the args object.
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
try {
    $farmsyncLine = [Console]::In.ReadLine()
    $farmsyncJson = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($farmsyncLine))
    $farmsyncRequest = ConvertFrom-Json -InputObject $farmsyncJson
    if ($farmsyncRequest.v -ne 1) { throw 'unsupported protocol version' }
    . ([ScriptBlock]::Create([string]$farmsyncRequest.script))
} catch {
    [Console]::Out.Write('{"ok":false,"error":{"kind":"protocol","detail":"bad request line","path":null}}' + "`n")
    [Console]::Out.Flush()
    exit 1
}
exit (Invoke-FarmsyncRequest -Arguments $farmsyncRequest.args)
