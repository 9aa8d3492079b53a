using System.CommandLine;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Vfio.Cli.Output;
using Vfio.Emulation.Edu;
using Vfio.Emulation.Nvme;
using Vfio.Spec.Nvme;
using Vfio.Emulation.VirtioNet;
using Vfio.User.Server;

namespace Vfio.Cli.Commands;

/// <summary><c>vfio serve edu|nvme|virtio-net --socket PATH [--once]</c>: serves an emulated device over vfio-user.</summary>
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
            if (!Arguments.TryGet(r, out int mb)) { return; }
            if (mb < 1 || (ulong)mb > NvmeDeviceOptions.MaxCapacityBytes >> 20) { r.AddError($"--size-mb must be 1 to {NvmeDeviceOptions.MaxCapacityBytes >> 20}"); }
        });
        var blockSize = new Option<int>("--block-size") { Description = "Logical block size: 512 or 4096", HelpName = "BYTES", DefaultValueFactory = _ => 512 };
        blockSize.Validators.Add(r =>
        {
            if (Arguments.TryGet(r, out int bs) && bs is not (512 or 4096)) { r.AddError("--block-size must be 512 or 4096"); }
        });
        var namespaces = new Option<int>("--namespaces")
        {
            Description = "Namespaces the controller can hold (NN, 1-64): above 1 it offers Namespace Management and Attachment; namespace 1 exists from the start",
            DefaultValueFactory = _ => 1,
            HelpName = "N",
        };
        namespaces.Validators.Add(r => { if (Arguments.TryGet(r, out int n) && n is < 1 or > 64) { r.AddError("--namespaces must be 1 to 64"); } });
        var capacityMb = new Option<int?>("--capacity-mb")
        {
            Description = $"Total NVM capacity in MiB for all namespaces (TNVMCAP; default: namespace 1's size; at most {NvmeDeviceOptions.MaxCapacityBytes >> 20})",
            HelpName = "MIB",
        };
        var firmwareSlots = new Option<int?>("--firmware-slots")
        {
            Description = "Firmware slots (1-7; slot 1 read-only with revision 1.0): the controller then takes Firmware Image Download and Commit " +
                "(without it, it answers them with Invalid Command Opcode, as QEMU 7.2 does)",
            HelpName = "N",
        };
        firmwareSlots.Validators.Add(r => { if (Arguments.TryGet(r, out int? n) && n is < 1 or > 7) { r.AddError("--firmware-slots must be 1 to 7"); } });
        var nvme = new Command("nvme", "An NVMe controller (1b36:0010) with in-memory namespaces: admin and I/O queues, read/write/flush, write zeroes, " +
            "deallocate, compare, MSI-X; log pages, features (saveable), asynchronous events, format and namespace management")
        {
            socket, once, sizeMb, blockSize, namespaces, capacityMb, firmwareSlots,
        };
        nvme.Validators.Add(r =>
        {
            if (r.GetValue(capacityMb) is { } cap && (cap < r.GetValue(sizeMb) || (ulong)cap > NvmeDeviceOptions.MaxCapacityBytes >> 20))
            {
                r.AddError($"--capacity-mb must be at least --size-mb and at most {NvmeDeviceOptions.MaxCapacityBytes >> 20}");
            }
        });
        nvme.SetAction(async (parse, ct) =>
        {
            int bs = parse.GetValue(blockSize);
            var options = new NvmeDeviceOptions
            {
                BlockSize = bs,
                BlockCount = ((ulong)parse.GetValue(sizeMb) << 20) / (ulong)bs,
                MaxNamespaces = parse.GetValue(namespaces),
                TotalCapacityBytes = (ulong)(parse.GetValue(capacityMb) ?? 0) << 20,
                FirmwareSlots = parse.GetValue(firmwareSlots),
                // What a tool under test may ask of a controller: every optional NVM command the model has, and saved features.
                Oncs = OptionalNvmCommands.WriteZeroes | OptionalNvmCommands.DatasetManagement | OptionalNvmCommands.Compare | OptionalNvmCommands.SaveAndSelect,
            };
            using var device = new NvmeDevice(options);
            var shape = new ServedDevice("nvme", "1b36", "0010", options.BlockSize, options.BlockCount);
            return await ServeAsync(context(parse), device, shape, parse.GetValue(socket)!, parse.GetValue(once), ct).ConfigureAwait(false);
        });
        var peerSocket = new Option<string?>("--peer-socket")
        {
            Description = "Serve a second port on this socket, joined to the first by a hub: what one client transmits the other receives",
            HelpName = "PATH",
        };
        var queueSize = new Option<int>("--queue-size") { Description = "Entries of each virtqueue: a power of two, 2-32768", HelpName = "N", DefaultValueFactory = _ => 256 };
        queueSize.Validators.Add(r =>
        {
            if (!Arguments.TryGet(r, out int n)) { return; }
            if (n < 2 || n > 32768 || (n & (n - 1)) != 0) { r.AddError("--queue-size must be a power of two from 2 to 32768"); }
        });
        var net = new Command("virtio-net", "A modern virtio-net port (1af4:1041), polled; with --peer-socket two ports joined by a hub")
        {
            socket, peerSocket, once, queueSize,
        };
        net.Validators.Add(r =>
        {
            if (r.GetValue(peerSocket) is { } p && p == r.GetValue(socket)) { r.AddError("--peer-socket must differ from --socket"); }
        });
        net.SetAction((parse, ct) =>
        {
            ushort size = (ushort)parse.GetValue(queueSize);
            var a = new VirtioNetPort([0x52, 0x54, 0x00, 0x00, 0x00, 0x01], queueSize: size);
            var devices = new List<(EmulatedPciDevice, string)> { (a, parse.GetValue(socket)!) };
            if (parse.GetValue(peerSocket) is { } peer)
            {
                var b = new VirtioNetPort([0x52, 0x54, 0x00, 0x00, 0x00, 0x02], queueSize: size);
                VirtioNetPort.Connect(a, b);
                devices.Add((b, peer));
            }
            return ServeAsync(context(parse), devices, new ServedDevice("virtio-net", "1af4", "1041", null, null), parse.GetValue(once), ct);
        });
        return new Command("serve", "Serve an emulated PCI device over vfio-user, for clients such as VfioUserDevice or QEMU's vfio-user-pci")
        {
            edu,
            nvme,
            net,
        };
    }

    private sealed record ServedDevice(string Name, string VendorId, string DeviceId, int? BlockSize, ulong? Blocks)
    {
        public override string ToString() =>
            $"{Name} ({VendorId}:{DeviceId})" + (Blocks is { } n ? $", {n} blocks of {BlockSize} bytes ({n * (ulong)BlockSize!.Value >> 20} MiB)" : "");

        public ServeJson ToJson(string state, string socket, string? peerSocket, int? clients) =>
            new(state, Name, VendorId, DeviceId, socket, peerSocket, BlockSize, Blocks, Blocks * (ulong?)BlockSize, clients);
    }

    private static Task<int> ServeAsync(CliContext ctx, EmulatedPciDevice device, ServedDevice served, string path, bool once, CancellationToken token) =>
        ServeAsync(ctx, [(device, path)], served, once, token);

    /// <summary>Serves each device on its own socket (a port pair: one socket a port), until each served one client with <paramref name="once"/>, or Ctrl-C.</summary>
    private static async Task<int> ServeAsync(CliContext ctx, IReadOnlyList<(EmulatedPciDevice Device, string Path)> devices, ServedDevice served, bool once, CancellationToken token)
    {
        // Ctrl-C and SIGTERM end serving cleanly (the socket files are removed); the synchronous invocation the
        // command line uses does not turn them into cancellation by itself.
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(token);
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Cancel(); });
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
        var ct = stop.Token;
        var servers = new List<VfioUserServer>();
        try
        {
            foreach (var (device, path) in devices)
            {
                var server = new VfioUserServer(device, logger: ctx.LoggerFactory.CreateLogger<VfioUserServer>());
                servers.Add(server);
                server.Listen(path);
            }
            string paths = string.Join(" and ", devices.Select(d => d.Path));
            string? peer = devices.Count > 1 ? devices[1].Path : null;
            if (ctx.Json) { ctx.WriteJson(served.ToJson("listening", devices[0].Path, peer, null), CliJson.Output.ServeJson); }
            else { ctx.Say($"Serving {served} over vfio-user on {paths}" + (once ? $" for one client{(devices.Count > 1 ? " each" : "")}." : "; Ctrl-C stops.")); }
            ctx.Output.Flush();   // a script reads the listening document (or the banner) while serving goes on
            try
            {
                await Task.WhenAll(servers.Select(server => once ? ServeOneAsync(server, ct) : server.RunAsync(ct))).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
            int clients = servers.Sum(s => s.ConnectionCount);
            if (ctx.Json) { ctx.WriteJson(served.ToJson("stopped", devices[0].Path, peer, clients), CliJson.Output.ServeJson); }
            else { ctx.Say($"Served {clients} client(s)."); }
            return ExitCodes.Ok;
        }
        finally
        {
            foreach (var server in servers) { server.Dispose(); }
            foreach (var (_, path) in devices)
            {
                try { File.Delete(path); } catch (IOException) { }
            }
        }
    }

    private static async Task ServeOneAsync(VfioUserServer server, CancellationToken ct)
    {
        var accepted = await server.AcceptAsync(ct).ConfigureAwait(false);
        await server.Serve(accepted).WaitAsync(ct).ConfigureAwait(false);
    }
}
