using System.CommandLine;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Vfio.Cli.Output;
using Vfio.Emulation.Nvme;
using Vfio.User.Emulation;
using Vfio.User.Server;

namespace Vfio.Cli.Commands;

/// <summary><c>vfio serve edu|nvme --socket PATH [--once]</c>: serves an emulated device over vfio-user.</summary>
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
        edu.SetAction((parse, ct) =>
            ServeAsync(context(parse), new EduDevice(), new ServedDevice("edu", "1234", "11e8", null, null), parse.GetValue(socket)!, parse.GetValue(once), ct));

        var sizeMb = new Option<int>("--size-mb")
        {
            Description = $"Namespace size in MiB, held in memory (1-{NvmeDeviceOptions.MaxCapacityBytes >> 20})",
            HelpName = "N",
            DefaultValueFactory = _ => 64,
        };
        sizeMb.Validators.Add(r =>
        {
            int mb = r.GetValueOrDefault<int>();
            if (mb < 1 || (ulong)mb > NvmeDeviceOptions.MaxCapacityBytes >> 20) { r.AddError($"--size-mb must be 1 to {NvmeDeviceOptions.MaxCapacityBytes >> 20}"); }
        });
        var blockSize = new Option<int>("--block-size") { Description = "Logical block size: 512 or 4096", HelpName = "BYTES", DefaultValueFactory = _ => 512 };
        blockSize.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<int>() is not (512 or 4096)) { r.AddError("--block-size must be 512 or 4096"); }
        });
        var nvme = new Command("nvme", "An NVMe controller (1b36:0010) with one in-memory namespace: admin and I/O queues, read/write/flush, write zeroes, deallocate, MSI-X")
        {
            socket, once, sizeMb, blockSize,
        };
        nvme.SetAction(async (parse, ct) =>
        {
            int bs = parse.GetValue(blockSize);
            var options = new NvmeDeviceOptions { BlockSize = bs, BlockCount = ((ulong)parse.GetValue(sizeMb) << 20) / (ulong)bs };
            using var device = new NvmeDevice(options);
            var shape = new ServedDevice("nvme", "1b36", "0010", options.BlockSize, options.BlockCount);
            return await ServeAsync(context(parse), device, shape, parse.GetValue(socket)!, parse.GetValue(once), ct).ConfigureAwait(false);
        });
        return new Command("serve", "Serve an emulated PCI device over vfio-user, for clients such as VfioUserDevice or QEMU's vfio-user-pci")
        {
            edu,
            nvme,
        };
    }

    private sealed record ServedDevice(string Name, string VendorId, string DeviceId, int? BlockSize, ulong? Blocks)
    {
        public override string ToString() =>
            $"{Name} ({VendorId}:{DeviceId})" + (Blocks is { } n ? $", {n} blocks of {BlockSize} bytes ({n * (ulong)BlockSize!.Value >> 20} MiB)" : "");

        public ServeJson ToJson(string state, string socket, int? clients) =>
            new(state, Name, VendorId, DeviceId, socket, BlockSize, Blocks, Blocks * (ulong?)BlockSize, clients);
    }

    private static async Task<int> ServeAsync(CliContext ctx, EmulatedPciDevice device, ServedDevice served, string path, bool once, CancellationToken token)
    {
        // Ctrl-C and SIGTERM end serving cleanly (the socket file is removed); the synchronous invocation the
        // command line uses does not turn them into cancellation by itself.
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(token);
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Cancel(); });
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
        var ct = stop.Token;
        using var server = new VfioUserServer(device, logger: ctx.LoggerFactory.CreateLogger<VfioUserServer>());
        server.Listen(path);
        if (ctx.Json) { ctx.WriteJson(served.ToJson("listening", path, null), CliJson.Default.ServeJson); }
        else { ctx.Say($"Serving {served} over vfio-user on {path}" + (once ? " for one client." : "; Ctrl-C stops.")); }
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
        if (ctx.Json) { ctx.WriteJson(served.ToJson("stopped", path, server.ConnectionCount), CliJson.Default.ServeJson); }
        else { ctx.Say($"Served {server.ConnectionCount} client(s)."); }
        return ExitCodes.Ok;
    }
}
