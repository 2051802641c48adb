// farmsync lab: the launcher of a lab ASP.NET node.
//
// Usage: mono FarmsyncLabHost.exe <port> <application directory>
// Creates the ASP.NET application host (System.Web.Hosting.ApplicationHost) over the
// application directory and serves it on http://127.0.0.1:<port>/. System.Web reads its root
// web.config from MONO_CFG_DIR/mono/4.5/, which the lab gives every node its own copy of.

using System;
using System.IO;
using System.Web.Hosting;

namespace Farmsync.Lab
{
    public static class Launcher
    {
        public static int Main(string[] args)
        {
            if (args.Length != 2) {
                Console.Error.WriteLine("usage: FarmsyncLabHost.exe PORT APPDIR");
                return 2;
            }
            int port = Int32.Parse(args[0]);
            string appDir = Path.GetFullPath(args[1]);
            var host = (AppHost) ApplicationHost.CreateApplicationHost(typeof(AppHost), "/", appDir);
            host.Serve("http://127.0.0.1:" + port + "/");
            return 0;
        }
    }
}
