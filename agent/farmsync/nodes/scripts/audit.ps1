# audit {paths, scan_dirs, iis, windows_facts}
#   -> {files, leftovers, subfolder_configs, iis, env, registry, rsa, facts_error, machine_id}
# Read-only: nothing on the node is created, changed or removed. Files are read with .NET (a
# share without access is unreadable, never missing); no request value reaches a cmdlet.
# Same answers as farmsync/nodes/agent_audit.py, the Python twin.
$ErrorActionPreference = 'Stop'

$FarmsyncRedirectionConfig = '%windir%\System32\inetsrv\config\redirection.config'
$FarmsyncApplicationHostConfig = '%windir%\System32\inetsrv\config\applicationHost.config'
$FarmsyncScanDepth = 3
$FarmsyncScanLimit = 200
$FarmsyncRsaContainers = @('iisConfigurationKey', 'iisWasKey')
$FarmsyncViewStateMacKey = 'SOFTWARE\Microsoft\.NETFramework\v4.0.30319'
$FarmsyncEnvReference = '%([A-Za-z_][A-Za-z0-9_()]*)%'

function Test-FarmsyncUnc {
    param([string]$Path)
    return ($Path.StartsWith('\\') -or $Path.StartsWith('//'))
}

function Join-FarmsyncWindowsPath {
    param([string]$Folder, [string]$Name)
    return $Folder.TrimEnd([char[]]@('\', '/')) + '\' + $Name
}

function Get-FarmsyncInnerException {
    # .NET exceptions thrown inside method calls arrive wrapped.
    param([System.Exception]$Exception)
    $ex = $Exception
    while ($ex -is [System.Management.Automation.MethodInvocationException] -and
           $null -ne $ex.InnerException) {
        $ex = $ex.InnerException
    }
    return $ex
}

function Read-FarmsyncAuditState {
    # One file as the read op reports it; a path on a share that cannot be reached is an error.
    param([string]$Path)
    try {
        $target = Resolve-FarmsyncPath -Path $Path
        if ((Test-FarmsyncUnc -Path $target) -and
            -not [System.IO.Directory]::Exists([System.IO.Path]::GetDirectoryName($target))) {
            return @{ path = $Path; status = 'error'; error_kind = 'unreachable'
                      error = 'network share not reachable from this node' }
        }
        if ([System.IO.Directory]::Exists($target)) {
            return @{ path = $Path; status = 'error'; error_kind = 'is-directory'; error = 'is a directory' }
        }
        $bytes = [System.IO.File]::ReadAllBytes($target)
        $written = [System.DateTimeOffset][System.IO.File]::GetLastWriteTimeUtc($target)
        return @{
            path = $Path
            status = 'ok'
            content_b64 = [System.Convert]::ToBase64String($bytes)
            sha256 = (Get-FarmsyncSha256 -Bytes $bytes)
            mtime = $written.ToUnixTimeMilliseconds() / 1000.0
        }
    } catch {
        $info = Get-FarmsyncErrorInfo -ErrorRecord $_
        if ($info.kind -eq 'not-found') {
            return @{ path = $Path; status = 'missing' }
        }
        return @{ path = $Path; status = 'error'; error_kind = $info.kind; error = $info.detail }
    }
}

function ConvertTo-FarmsyncXml {
    # A parsed document with DTDs refused and no resolver: no entity expansion, no network.
    param([byte[]]$Bytes)
    $settings = [System.Xml.XmlReaderSettings]::new()
    $settings.DtdProcessing = [System.Xml.DtdProcessing]::Prohibit
    $settings.XmlResolver = $null
    $stream = [System.IO.MemoryStream]::new($Bytes)
    try {
        $reader = [System.Xml.XmlReader]::Create($stream, $settings)
        try {
            $document = [System.Xml.XmlDocument]::new()
            $document.XmlResolver = $null
            $document.Load($reader)
        } finally {
            $reader.Dispose()
        }
    } finally {
        $stream.Dispose()
    }
    # The comma keeps PowerShell from enumerating the document's child nodes.
    return , $document
}

function Get-FarmsyncApplicationHostPath {
    # redirection.config first: shared configuration moves applicationHost.config elsewhere.
    param($State)
    if ($State.status -ne 'ok') { return $FarmsyncApplicationHostConfig }
    try {
        $document = ConvertTo-FarmsyncXml -Bytes ([System.Convert]::FromBase64String($State.content_b64))
        $redirection = $document.DocumentElement.SelectSingleNode('configurationRedirection')
        if ($null -ne $redirection -and
            ([string]$redirection.GetAttribute('enabled')).Trim().ToLowerInvariant() -eq 'true') {
            $shared = ([string]$redirection.GetAttribute('path')).Trim()
            if ($shared -ne '') {
                return (Join-FarmsyncWindowsPath -Folder $shared -Name 'applicationHost.config')
            }
        }
    } catch {
        # A malformed redirection.config is the controller's to report; IIS's default stands.
    }
    return $FarmsyncApplicationHostConfig
}

function Get-FarmsyncPhysicalPaths {
    # Each application's root folder, then its other virtual directories, in file order.
    param($State)
    $found = [System.Collections.Generic.List[string]]::new()
    if ($State.status -ne 'ok') { return , $found }
    try {
        $document = ConvertTo-FarmsyncXml -Bytes ([System.Convert]::FromBase64String($State.content_b64))
    } catch {
        return , $found
    }
    $applications = $document.DocumentElement.SelectNodes('system.applicationHost/sites/site/application')
    foreach ($application in $applications) {
        $root = $null
        $others = [System.Collections.Generic.List[string]]::new()
        foreach ($directory in $application.SelectNodes('virtualDirectory')) {
            $physical = [string]$directory.GetAttribute('physicalPath')
            if ($physical -eq '') { continue }
            $virtual = ([string]$directory.GetAttribute('path')).Trim('/')
            if ($virtual -eq '' -and $null -eq $root) { $root = $physical } else { $others.Add($physical) }
        }
        if ($null -eq $root) { continue }
        foreach ($physical in @($root) + $others.ToArray()) {
            if (-not $found.Contains($physical)) { $found.Add($physical) }
        }
    }
    return , $found
}

function Get-FarmsyncSubfolderConfigs {
    # web.config files below $Scan (not in it), at most $FarmsyncScanDepth levels, skipping links.
    param([string]$Scan, [int]$Budget)
    $found = [System.Collections.Generic.List[string]]::new()
    $prefix = $Scan.TrimEnd([char[]]@('\', '/'))
    try {
        $top = [System.IO.DirectoryInfo]::new((Resolve-FarmsyncPath -Path $Scan))
        if (-not $top.Exists) { return , $found }
    } catch {
        return , $found
    }
    $stack = [System.Collections.Generic.Stack[object]]::new()
    $stack.Push(@{ Folder = $top; Relative = ''; Depth = 0 })
    while ($stack.Count -gt 0 -and $found.Count -lt $Budget) {
        $entry = $stack.Pop()
        try {
            $files = $entry.Folder.GetFiles()
            $folders = $entry.Folder.GetDirectories()
        } catch {
            continue
        }
        if ($entry.Depth -gt 0) {
            foreach ($file in $files) {
                if ($file.Name -ieq 'web.config' -and $found.Count -lt $Budget) {
                    $found.Add($prefix + $entry.Relative + '\' + $file.Name)
                }
            }
        }
        if ($entry.Depth -ge $FarmsyncScanDepth) { continue }
        foreach ($folder in $folders) {
            if ($folder.Attributes -band [System.IO.FileAttributes]::ReparsePoint) { continue }
            $stack.Push(@{ Folder = $folder; Relative = $entry.Relative + '\' + $folder.Name
                           Depth = $entry.Depth + 1 })
        }
    }
    return , $found
}

function Get-FarmsyncLeftovers {
    # Names of the <name>.farmsync-* files beside $Path (backups, staging files).
    param([string]$Path)
    $names = [System.Collections.Generic.List[string]]::new()
    try {
        $target = Resolve-FarmsyncPath -Path $Path
        $prefix = [System.IO.Path]::GetFileName($target) + '.farmsync-'
        $folder = [System.IO.DirectoryInfo]::new([System.IO.Path]::GetDirectoryName($target))
        foreach ($file in $folder.GetFiles()) {
            if ($file.Name.StartsWith($prefix, [System.StringComparison]::OrdinalIgnoreCase)) {
                $names.Add($file.Name)
            }
        }
    } catch {
        return , [string[]]@()
    }
    $sorted = $names.ToArray()
    [System.Array]::Sort($sorted, [System.StringComparer]::Ordinal)
    return , $sorted
}

function Get-FarmsyncViewStateMac {
    # HKLM\SOFTWARE\Microsoft\.NETFramework\v4.0.30319 AspNetEnforceViewStateMac, both views.
    $values = @{}
    $views = @(
        @{ Name = '64'; View = [Microsoft.Win32.RegistryView]::Registry64 },
        @{ Name = '32'; View = [Microsoft.Win32.RegistryView]::Registry32 }
    )
    foreach ($view in $views) {
        $values[$view.Name] = $null
        $base = [Microsoft.Win32.RegistryKey]::OpenBaseKey([Microsoft.Win32.RegistryHive]::LocalMachine, $view.View)
        try {
            $key = $base.OpenSubKey($FarmsyncViewStateMacKey, $false)
            if ($null -ne $key) {
                try {
                    $value = $key.GetValue('AspNetEnforceViewStateMac', $null)
                    if ($null -ne $value) { $values[$view.Name] = [int]$value }
                } finally {
                    $key.Dispose()
                }
            }
        } finally {
            $base.Dispose()
        }
    }
    return $values
}

function Get-FarmsyncRsaContainer {
    # The public key's fingerprint of an existing machine key container. UseExistingKey: a
    # missing container is reported, never created. The container's key is never exported.
    param([string]$Name)
    $parameters = [System.Security.Cryptography.CspParameters]::new()
    $parameters.KeyContainerName = $Name
    $parameters.Flags = [System.Security.Cryptography.CspProviderFlags]::UseMachineKeyStore -bor
        [System.Security.Cryptography.CspProviderFlags]::UseExistingKey
    try {
        $rsa = [System.Security.Cryptography.RSACryptoServiceProvider]::new($parameters)
    } catch {
        $inner = Get-FarmsyncInnerException -Exception $_.Exception
        # 0x80090016 NTE_BAD_KEYSET: no such container.
        if ($inner.HResult -eq -2146893802) {
            return @{ status = 'missing'; fingerprint = $null; error = 'no such key container' }
        }
        return @{ status = 'error'; fingerprint = $null; error = $inner.GetType().Name }
    }
    try {
        $blob = $rsa.ExportCspBlob($false)
        $digest = Get-FarmsyncSha256 -Bytes $blob
        return @{ status = 'ok'; fingerprint = 'rsa-' + $digest.Substring(0, 16); error = $null }
    } finally {
        $rsa.Dispose()
    }
}

function Invoke-FarmsyncOp {
    param($Arguments)
    $files = [ordered]@{}
    foreach ($entry in @($Arguments.paths)) {
        $path = [string]$entry
        if (-not $files.Contains($path)) { $files[$path] = Read-FarmsyncAuditState -Path $path }
    }
    $scanDirs = [System.Collections.Generic.List[string]]::new()
    foreach ($entry in @($Arguments.scan_dirs)) {
        if ($null -ne $entry) { $scanDirs.Add([string]$entry) }
    }
    $iis = $null
    if ($Arguments.iis -eq $true) {
        $redirection = Read-FarmsyncAuditState -Path $FarmsyncRedirectionConfig
        $files[$FarmsyncRedirectionConfig] = $redirection
        $hostPath = Get-FarmsyncApplicationHostPath -State $redirection
        $applicationHost = Read-FarmsyncAuditState -Path $hostPath
        $files[$hostPath] = $applicationHost
        foreach ($physical in (Get-FarmsyncPhysicalPaths -State $applicationHost)) {
            $config = Join-FarmsyncWindowsPath -Folder $physical -Name 'web.config'
            if (-not $files.Contains($config)) { $files[$config] = Read-FarmsyncAuditState -Path $config }
            $scanDirs.Add($physical)
        }
        $iis = @{ redirection = $FarmsyncRedirectionConfig; application_host = $hostPath }
    }
    $subfolders = @{}
    $budget = $FarmsyncScanLimit
    $seenScans = [System.Collections.Generic.HashSet[string]]::new()
    foreach ($scan in $scanDirs) {
        if (-not $seenScans.Add($scan)) { continue }
        if ($budget -le 0) { break }
        $found = Get-FarmsyncSubfolderConfigs -Scan $scan -Budget $budget
        $budget -= $found.Count
        $subfolders[$scan] = $found.ToArray()
        foreach ($config in $found) {
            if (-not $files.Contains($config)) { $files[$config] = Read-FarmsyncAuditState -Path $config }
        }
    }
    $leftovers = @{}
    $names = [System.Collections.Generic.SortedSet[string]]::new()
    foreach ($path in @($files.Keys)) {
        if ($files[$path].status -eq 'ok') {
            $mine = Get-FarmsyncLeftovers -Path $path
            if ($mine.Length -gt 0) { $leftovers[$path] = $mine }
        }
        foreach ($match in [regex]::Matches($path, $FarmsyncEnvReference)) {
            $null = $names.Add($match.Groups[1].Value)
        }
    }
    foreach ($scan in $scanDirs) {
        foreach ($match in [regex]::Matches($scan, $FarmsyncEnvReference)) {
            $null = $names.Add($match.Groups[1].Value)
        }
    }
    $environment = @{}
    foreach ($name in $names) {
        $value = [System.Environment]::GetEnvironmentVariable($name)
        if ($null -ne $value) { $environment[$name] = $value }
    }
    $registry = $null
    $rsa = $null
    $factsError = $null
    if ($Arguments.windows_facts -eq $true) {
        try {
            $registry = Get-FarmsyncViewStateMac
        } catch {
            $factsError = 'registry: ' + (Get-FarmsyncInnerException -Exception $_.Exception).GetType().Name
        }
        $rsa = @{}
        foreach ($container in $FarmsyncRsaContainers) {
            $rsa[$container] = Get-FarmsyncRsaContainer -Name $container
        }
    }
    $list = [System.Collections.Generic.List[object]]::new()
    foreach ($state in $files.Values) { $list.Add($state) }
    return @{
        files = $list.ToArray()
        leftovers = $leftovers
        subfolder_configs = $subfolders
        iis = $iis
        env = $environment
        registry = $registry
        rsa = $rsa
        facts_error = $factsError
        machine_id = (Get-FarmsyncMachineId)
    }
}
