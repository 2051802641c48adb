// farmsync lab: the part of the lab's ASP.NET node that runs inside the ASP.NET AppDomain.
//
// Compiled with mcs into bin/FarmsyncLab.dll of the lab application, so System.Web never has
// to compile anything at run time: the handlers and the Page are ordinary precompiled types
// mapped by the application's web.config.
//
// Nothing here prints key material: the pages only say "accepted" or "rejected".

using System;
using System.Collections.Generic;
using System.IO;
using System.Net;
using System.Text;
using System.Threading;
using System.Web;
using System.Web.Hosting;
using System.Web.Security;
using System.Web.UI;
using System.Web.UI.HtmlControls;
using System.Web.UI.WebControls;

namespace Farmsync.Lab
{
    // Created by ApplicationHost.CreateApplicationHost in the ASP.NET AppDomain; serves HTTP
    // from an HttpListener running in that same domain, so requests never cross domains.
    public sealed class AppHost : MarshalByRefObject
    {
        public override object InitializeLifetimeService()
        {
            return null; // live as long as the process
        }

        public void Serve(string prefix)
        {
            var listener = new HttpListener();
            listener.Prefixes.Add(prefix);
            listener.Start();
            Console.WriteLine("farmsync-lab: listening on " + prefix);
            Console.Out.Flush();
            while (true) {
                HttpListenerContext ctx = listener.GetContext();
                ThreadPool.QueueUserWorkItem(Handle, ctx);
            }
        }

        static void Handle(object state)
        {
            var ctx = (HttpListenerContext) state;
            try {
                var wr = new LabWorkerRequest(ctx);
                HttpRuntime.ProcessRequest(wr);
                wr.WaitAndSend();
            } catch (Exception e) {
                Console.Error.WriteLine("farmsync-lab: request failed: " + e.GetType().FullName);
                try {
                    ctx.Response.StatusCode = 500;
                    ctx.Response.Close();
                } catch (Exception) {
                    // the client has gone; nothing left to tell it
                }
            }
        }
    }

    // Hands System.Web one HttpListener request (verb, headers, preloaded body) and collects its
    // response in memory; the response is written once System.Web signals EndOfRequest.
    public sealed class LabWorkerRequest : SimpleWorkerRequest
    {
        readonly HttpListenerContext ctx;
        readonly byte[] body;
        readonly ManualResetEvent done = new ManualResetEvent(false);
        readonly MemoryStream output = new MemoryStream();
        readonly List<KeyValuePair<string, string>> headers = new List<KeyValuePair<string, string>>();
        int status = 200;

        public LabWorkerRequest(HttpListenerContext ctx)
            : base(ctx.Request.Url.AbsolutePath.TrimStart('/'), QueryOf(ctx), TextWriter.Null)
        {
            this.ctx = ctx;
            using (var buffer = new MemoryStream()) {
                ctx.Request.InputStream.CopyTo(buffer);
                body = buffer.ToArray();
            }
        }

        static string QueryOf(HttpListenerContext ctx)
        {
            string q = ctx.Request.Url.Query;
            return q.StartsWith("?") ? q.Substring(1) : q;
        }

        public override string GetHttpVerbName() { return ctx.Request.HttpMethod; }
        public override string GetRemoteAddress() { return ctx.Request.RemoteEndPoint.Address.ToString(); }
        public override int GetRemotePort() { return ctx.Request.RemoteEndPoint.Port; }
        public override string GetLocalAddress() { return ctx.Request.LocalEndPoint.Address.ToString(); }
        public override int GetLocalPort() { return ctx.Request.LocalEndPoint.Port; }
        public override string GetServerName() { return ctx.Request.Url.Host; }

        public override string GetKnownRequestHeader(int index)
        {
            switch (index) {
            case HeaderContentLength:
                return body.Length > 0 ? body.Length.ToString() : ctx.Request.Headers["Content-Length"];
            default:
                return ctx.Request.Headers[GetKnownRequestHeaderName(index)];
            }
        }

        public override string GetUnknownRequestHeader(string name) { return ctx.Request.Headers[name]; }

        public override string[][] GetUnknownRequestHeaders()
        {
            var all = new List<string[]>();
            foreach (string name in ctx.Request.Headers.AllKeys) {
                if (GetKnownRequestHeaderIndex(name) < 0)
                    all.Add(new[] { name, ctx.Request.Headers[name] });
            }
            return all.ToArray();
        }

        public override byte[] GetPreloadedEntityBody() { return body; }
        public override bool IsEntireEntityBodyIsPreloaded() { return true; }
        public override int GetTotalEntityBodyLength() { return body.Length; }
        public override int GetPreloadedEntityBodyLength() { return body.Length; }
        public override int ReadEntityBody(byte[] buffer, int size) { return 0; }

        public override void SendStatus(int statusCode, string statusDescription) { status = statusCode; }

        public override void SendKnownResponseHeader(int index, string value)
        {
            headers.Add(new KeyValuePair<string, string>(GetKnownResponseHeaderName(index), value));
        }

        public override void SendUnknownResponseHeader(string name, string value)
        {
            headers.Add(new KeyValuePair<string, string>(name, value));
        }

        public override void SendResponseFromMemory(byte[] data, int length) { output.Write(data, 0, length); }

        public override void SendResponseFromFile(string filename, long offset, long length)
        {
            using (var f = File.OpenRead(filename)) {
                f.Seek(offset, SeekOrigin.Begin);
                var buffer = new byte[length];
                int read = f.Read(buffer, 0, buffer.Length);
                output.Write(buffer, 0, read);
            }
        }

        public override void SendResponseFromFile(IntPtr handle, long offset, long length)
        {
            throw new NotSupportedException("file handles are not served by the lab host");
        }

        // System.Web ends a normal request with EndOfRequest, but a request it fails early
        // (FinishWithException) only gets FlushResponse(true) and CloseConnection.
        public override void FlushResponse(bool finalFlush)
        {
            if (finalFlush)
                done.Set();
        }

        public override void CloseConnection() { done.Set(); }
        public override void EndOfRequest() { done.Set(); }

        public void WaitAndSend()
        {
            if (!done.WaitOne(TimeSpan.FromSeconds(120)))
                status = 504;
            HttpListenerResponse r = ctx.Response;
            r.StatusCode = status;
            foreach (var h in headers) {
                string name = h.Key;
                if (String.Equals(name, "Content-Length", StringComparison.OrdinalIgnoreCase)
                    || String.Equals(name, "Transfer-Encoding", StringComparison.OrdinalIgnoreCase)
                    || String.Equals(name, "Connection", StringComparison.OrdinalIgnoreCase)
                    || String.Equals(name, "Keep-Alive", StringComparison.OrdinalIgnoreCase)
                    || String.Equals(name, "Server", StringComparison.OrdinalIgnoreCase)
                    || String.Equals(name, "Date", StringComparison.OrdinalIgnoreCase))
                    continue;
                if (String.Equals(name, "Content-Type", StringComparison.OrdinalIgnoreCase))
                    r.ContentType = h.Value;
                else if (String.Equals(name, "Location", StringComparison.OrdinalIgnoreCase))
                    r.RedirectLocation = h.Value;
                else
                    r.Headers.Add(name, h.Value);
            }
            byte[] data = output.ToArray();
            r.ContentLength64 = data.Length;
            r.OutputStream.Write(data, 0, data.Length);
            r.Close();
        }
    }

    static class Reply
    {
        public static void Text(HttpContext context, int status, string text)
        {
            context.Response.StatusCode = status;
            context.Response.ContentType = "text/plain";
            context.Response.Write(text);
        }
    }

    // GET /ping.axd: the node has finished initialising System.Web and can use its machineKey
    // (a ticket round trip), so a root web.config System.Web rejects shows up here as
    // 500 "config-error" instead of on the first real request. Only the exception's type is
    // shown: its message could quote the file.
    public sealed class PingHandler : IHttpHandler
    {
        public bool IsReusable { get { return true; } }

        public void ProcessRequest(HttpContext context)
        {
            try {
                var ticket = new FormsAuthenticationTicket("farmsync-lab-ping", false, 1);
                FormsAuthenticationTicket back = FormsAuthentication.Decrypt(FormsAuthentication.Encrypt(ticket));
                if (back == null || back.Name != ticket.Name)
                    throw new InvalidOperationException("ticket round trip failed");
            } catch (Exception e) {
                Exception root = e;
                while (root.InnerException != null)
                    root = root.InnerException;
                Reply.Text(context, 500, "farmsync-lab config-error " + root.GetType().FullName + "\n");
                return;
            }
            Reply.Text(context, 200, "farmsync-lab ok\n");
        }
    }

    // GET /login.axd?user=NAME: issues a forms-authentication ticket (cookie) for NAME, encrypted
    // and signed with this node's machineKey (protection="All" in the app's web.config).
    public sealed class LoginHandler : IHttpHandler
    {
        public bool IsReusable { get { return true; } }

        public void ProcessRequest(HttpContext context)
        {
            string user = context.Request.QueryString["user"];
            if (String.IsNullOrEmpty(user)) {
                Reply.Text(context, 400, "missing user\n");
                return;
            }
            FormsAuthentication.SetAuthCookie(user, false);
            Reply.Text(context, 200, "issued " + FormsAuthentication.FormsCookieName + "\n");
        }
    }

    // GET /check.axd with the ticket cookie: 200 "accepted USER" when this node can decrypt and
    // validate the ticket, 403 "rejected" otherwise.
    public sealed class CheckHandler : IHttpHandler
    {
        public bool IsReusable { get { return true; } }

        public void ProcessRequest(HttpContext context)
        {
            HttpCookie cookie = context.Request.Cookies[FormsAuthentication.FormsCookieName];
            if (cookie == null || String.IsNullOrEmpty(cookie.Value)) {
                Reply.Text(context, 403, "rejected: no ticket\n");
                return;
            }
            FormsAuthenticationTicket ticket = null;
            try {
                ticket = FormsAuthentication.Decrypt(cookie.Value);
            } catch (Exception e) {
                Reply.Text(context, 403, "rejected: " + e.GetType().Name + "\n");
                return;
            }
            if (ticket == null || ticket.Expired) {
                Reply.Text(context, 403, "rejected: invalid ticket\n");
                return;
            }
            Reply.Text(context, 200, "accepted " + ticket.Name + "\n");
        }
    }

    // /Form.aspx: a Page with a server form (HtmlForm). Its controls are built here rather than
    // parsed from markup so System.Web has nothing to compile at run time (a node starts in well
    // under a second instead of waiting for mcs). The first GET stores a value in ViewState; the
    // postback reads it back, which System.Web only allows after the ViewState MAC validates
    // against this node's machineKey.
    public sealed class FormPage : Page
    {
        readonly TextBox name = new TextBox { ID = "Name" };
        readonly Button go = new Button { ID = "Go", Text = "Go" };
        readonly Label result = new Label { ID = "Result" };

        public FormPage()
        {
            EnableViewStateMac = true;
            // Event validation is MAC'd with the same key; it is off so that a rejection here is
            // the ViewState MAC itself and nothing else.
            EnableEventValidation = false;
        }

        protected override void OnInit(EventArgs e)
        {
            Controls.Add(new LiteralControl("<!DOCTYPE html>\n<html><head><title>farmsync lab</title></head><body>\n"));
            var form = new HtmlForm { ID = "LabForm" };
            form.Controls.Add(name);
            form.Controls.Add(go);
            form.Controls.Add(result);
            Controls.Add(form);
            Controls.Add(new LiteralControl("\n</body></html>\n"));
            go.Click += OnGo;
            base.OnInit(e);
        }

        protected override void OnLoad(EventArgs e)
        {
            if (!IsPostBack) {
                ViewState["issued"] = "farmsync-lab";
                result.Text = "fresh";
            }
            base.OnLoad(e);
        }

        void OnGo(object sender, EventArgs e)
        {
            object issued = ViewState["issued"];
            result.Text = issued == null ? "postback-without-state" : "postback-accepted";
        }
    }
}
