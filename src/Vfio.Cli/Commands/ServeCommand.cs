using System.CommandLine;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Vfio.User.Emulation;
using Vfio.Cli.Output;
using Vfio.User.Server;

namespace Vfio.Cli.Commands;

/// <summary><c>vfio serve edu --socket PATH [--once] [--json]</c>: serves an emulated device over vfio-user.</summary>
internal static class ServeCommand
{
    public static Command Create(Func<ParseResult, CliContext> context)
    {
        var socket = new Option<string>("--socket")
        {
            Description = "The UNIX socket to listen on (a stale socket file there is replaced)",
            HelpName = "PATH",
            Required = true,
        };
        var once = new Option<bool>("--once") { Description = "Serve one client, then exit (default: serve clients one after another until Ctrl-C)" };
        var edu = new Command("edu", "QEMU's educational device (1234:11e8): registers, factorial, interrupts, a DMA engine") { socket, once };
        edu.SetAction((parse, ct) => ServeAsync(context(parse), new EduDevice(), "edu", parse.GetValue(socket)!, parse.GetValue(once), ct));
        return new Command("serve", "Serve an emulated PCI device over vfio-user, for clients such as VfioUserDevice or QEMU's vfio-user-pci")
        {
            edu,
        };
    }

    private static async Task<int> ServeAsync(CliContext ctx, EmulatedPciDevice device, string name, string path, bool once, CancellationToken token)
    {
        // Ctrl-C and SIGTERM end serving cleanly (the socket file is removed); the synchronous invocation the
        // command line uses does not turn them into cancellation by itself.
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(token);
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Cancel(); });
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
        var ct = stop.Token;
        using var server = new VfioUserServer(device, logger: ctx.LoggerFactory.CreateLogger<VfioUserServer>());
        server.Listen(path);
        // Config space offsets 0 and 2: vendor and device ID (PCI Local Bus 3.0 §6.2.1).
        string vendor = $"{device.Config.Read16(0):x4}", deviceId = $"{device.Config.Read16(2):x4}";
        string ids = $"{vendor}:{deviceId}";
        // With --json standard output carries only the final document; a script waits for the socket file instead.
        if (!ctx.Json)
        {
            ctx.Say($"Serving {name} ({ids}) over vfio-user on {path}" + (once ? " for one client." : "; Ctrl-C stops."));
            ctx.Output.Flush();
        }
        try
        {
            if (once)
            {
                var accepted = await server.AcceptAsync(ct).ConfigureAwait(false);
                await server.Serve(accepted).WaitAsync(ct).ConfigureAwait(false);
            }
            else
            {
                await server.RunAsync(ct).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException)
        {
        }
        finally
        {
            try { File.Delete(path); } catch (IOException) { }
        }
        if (ctx.Json)
        {
            ctx.WriteJson(new ServeJson(name, vendor, deviceId, path, server.ConnectionCount, Stopped: !once || ct.IsCancellationRequested),
                CliJson.Output.ServeJson);
        }
        else
        {
            ctx.Say($"Served {server.ConnectionCount} client(s).");
        }
        return ExitCodes.Ok;
    }
}
