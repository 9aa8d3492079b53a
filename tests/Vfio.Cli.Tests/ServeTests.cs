using System.Text.Json;
using Vfio.Devices;
using Vfio.Dma;
using Vfio.Net;
using Vfio.Nvme;
using Vfio.VirtioNet;
using Vfio.Tests.Host;
using Vfio.User.Client;

namespace Vfio.Cli.Tests;

/// <summary><c>vfio serve edu|nvme</c>: emulated devices over vfio-user, driven by the library's client (and the NVMe driver).</summary>
public sealed class ServeTests : IDisposable
{
    private readonly FakeSysfs _fs = new();
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "vfio-serve-" + Guid.NewGuid().ToString("N")[..12]);

    public ServeTests() => Directory.CreateDirectory(_dir);

    public void Dispose()
    {
        _fs.Dispose();
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    [Fact]
    public async Task Serve_edu_once_answers_one_client_and_exits()
    {
        string socket = Path.Combine(_dir, "edu.sock");
        var run = Task.Run(() => new CliRunner(_fs).Run("serve", "edu", "--socket", socket, "--once"), TestContext.Current.CancellationToken);

        uint id;
        using (var dev = ConnectWithRetry(socket))
        using (var bar0 = dev.OpenRegion(PciRegion.Bar0))
        {
            Assert.Equal(0x1234, dev.Config.VendorId);
            id = bar0.Read32(0);
        }
        var r = (await run.WaitAsync(TimeSpan.FromSeconds(20), TestContext.Current.CancellationToken)).AssertNoStackTrace();
        Assert.Equal(0x010000edu, id);
        Assert.Equal(ExitCodes.Ok, r.ExitCode);
        Assert.Contains($"Serving edu (1234:11e8) over vfio-user on {socket}", r.Out, StringComparison.Ordinal);
        Assert.Contains("Served 1 client(s).", r.Out, StringComparison.Ordinal);
        Assert.False(File.Exists(socket));
    }

    [Fact]
    public async Task Serve_edu_once_with_json_ends_with_a_stopped_document()
    {
        string socket = Path.Combine(_dir, "edu-json.sock");
        var run = Task.Run(() => new CliRunner(_fs).Run("serve", "edu", "--socket", socket, "--once", "--json"), TestContext.Current.CancellationToken);
        using (var dev = ConnectWithRetry(socket)) { Assert.Equal(0x11e8, dev.Config.DeviceId); }
        var r = (await run.WaitAsync(TimeSpan.FromSeconds(20), TestContext.Current.CancellationToken)).AssertNoStackTrace();

        Assert.Equal(ExitCodes.Ok, r.ExitCode);
        // The second of the two documents (listening, stopped).
        var reader = new Utf8JsonReader(System.Text.Encoding.UTF8.GetBytes(r.Out), new JsonReaderOptions { AllowMultipleValues = true });
        Assert.Equal("listening", JsonElement.ParseValue(ref reader).GetProperty("state").GetString());
        Assert.True(reader.Read());
        var d = JsonElement.ParseValue(ref reader);
        Assert.Equal("stopped", d.GetProperty("state").GetString());
        Assert.Equal("edu", d.GetProperty("device").GetString());
        Assert.Equal("1234", d.GetProperty("vendorId").GetString());
        Assert.Equal("11e8", d.GetProperty("deviceId").GetString());
        Assert.Equal(socket, d.GetProperty("socket").GetString());
        Assert.Equal(1, d.GetProperty("clients").GetInt32());
    }

    [Fact]
    public void Serve_without_a_socket_is_a_usage_error()
    {
        var r = new CliRunner(_fs).Run("serve", "edu").AssertNoStackTrace();
        Assert.Equal(ExitCodes.Usage, r.ExitCode);
        Assert.Contains("--socket", r.Err, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Serve_nvme_once_is_driven_by_the_nvme_driver_over_the_socket(bool shareDmaMemory)
    {
        string socket = Path.Combine(_dir, "nvme.sock");
        var run = Task.Run(() => new CliRunner(_fs).Run("serve", "nvme", "--socket", socket, "--size-mb", "8", "--once"), TestContext.Current.CancellationToken);

        using (var dev = ConnectWithRetry(socket, new VfioUserClientOptions { ShareDmaMemory = shareDmaMemory }))
        {
            Assert.Equal(0x1b36, dev.Config.VendorId);
            Assert.Equal(0x010802u, dev.Config.ClassCode);
            using var c = NvmeController.Open(dev, new NvmeControllerOptions { MaxIoQueues = 1 });
            Assert.Equal("Emulated NVMe Ctrl", c.Identity.ModelNumber);
            var ns = Assert.Single(c.Namespaces);
            Assert.Equal(512, ns.BlockSize);
            Assert.Equal(8UL << 20 >> 9, ns.BlockCount);
            using var q = c.CreateIoQueue();
            using var buf = dev.Dma.Allocate(16384, new DmaAllocationOptions { Contiguous = false });
            new Random(7).NextBytes(buf.Span);
            var written = buf.Span.ToArray();
            q.Write(ns, ns.BlockCount - 32, 32, buf);                 // the last 16 KiB: a PRP list
            buf.Span.Clear();
            q.Read(ns, ns.BlockCount - 32, 32, buf);
            Assert.Equal(written, buf.Span.ToArray());
            var e = Assert.Throws<NvmeCommandException>(() => q.Read(ns, ns.BlockCount - 1, 8, buf));
            Assert.Equal(0x80, e.StatusCode);                          // LBA out of range, and the server lives on
            q.Flush(ns);
        }
        var r = (await run.WaitAsync(TimeSpan.FromSeconds(20), TestContext.Current.CancellationToken)).AssertNoStackTrace();
        Assert.Equal(ExitCodes.Ok, r.ExitCode);
        Assert.Contains($"Serving nvme (1b36:0010), 16384 blocks of 512 bytes (8 MiB) over vfio-user on {socket}", r.Out, StringComparison.Ordinal);
        Assert.Contains("Served 1 client(s).", r.Out, StringComparison.Ordinal);
        Assert.False(File.Exists(socket));
    }

    [Fact]
    public async Task Serve_nvme_json_prints_a_listening_and_a_stopped_document()
    {
        string socket = Path.Combine(_dir, "nvme4k.sock");
        var run = Task.Run(() => new CliRunner(_fs).Run("--json", "serve", "nvme", "--socket", socket, "--size-mb", "2", "--block-size", "4096", "--once"),
            TestContext.Current.CancellationToken);
        using (var dev = ConnectWithRetry(socket))
        {
            using var c = NvmeController.Open(dev);
            Assert.Equal(4096, c.Namespaces[0].BlockSize);
        }
        var r = (await run.WaitAsync(TimeSpan.FromSeconds(20), TestContext.Current.CancellationToken)).AssertNoStackTrace();
        Assert.Equal(ExitCodes.Ok, r.ExitCode);
        // Two documents one after the other (as jq reads them): listening, then stopped.
        var reader = new Utf8JsonReader(System.Text.Encoding.UTF8.GetBytes(r.Out), new JsonReaderOptions { AllowMultipleValues = true });
        using var listening = JsonDocument.ParseValue(ref reader);
        Assert.True(reader.Read());
        using var stopped = JsonDocument.ParseValue(ref reader);
        Assert.False(reader.Read());
        var l = listening.RootElement;
        Assert.Equal("listening", l.GetProperty("state").GetString());
        Assert.Equal("nvme", l.GetProperty("device").GetString());
        Assert.Equal("1b36", l.GetProperty("vendorId").GetString());
        Assert.Equal("0010", l.GetProperty("deviceId").GetString());
        Assert.Equal(socket, l.GetProperty("socket").GetString());
        Assert.Equal(4096, l.GetProperty("blockSize").GetInt32());
        Assert.Equal(512UL, l.GetProperty("blocks").GetUInt64());
        Assert.Equal(2UL << 20, l.GetProperty("sizeBytes").GetUInt64());
        Assert.Equal(JsonValueKind.Null, l.GetProperty("clients").ValueKind);
        Assert.Equal(JsonValueKind.Null, l.GetProperty("peerSocket").ValueKind);
        Assert.Equal("stopped", stopped.RootElement.GetProperty("state").GetString());
        Assert.Equal(1, stopped.RootElement.GetProperty("clients").GetInt32());
    }

    [Fact]
    public async Task Nvme_identify_takes_the_socket_of_serve_nvme_where_a_bdf_goes()
    {
        string socket = Path.Combine(_dir, "identify.sock");
        var serve = Task.Run(() => new CliRunner(_fs).Run("serve", "nvme", "--socket", socket, "--size-mb", "2", "--once"), TestContext.Current.CancellationToken);

        var r = await RunWhenListening("nvme", "identify", socket, "--json");

        Assert.True(r.ExitCode == ExitCodes.Ok, $"exit {r.ExitCode}: {r.Out}{r.Err}");
        var d = Json.Parse(r.Out);
        Assert.Equal(socket, d.GetProperty("address").GetString());
        Assert.Equal("vfio-user", d.GetProperty("mode").GetString());
        Assert.Equal(4096UL, Assert.Single(d.GetProperty("namespaces").EnumerateArray()).GetProperty("blocks").GetUInt64());
        Assert.Equal(ExitCodes.Ok, (await serve.WaitAsync(TimeSpan.FromSeconds(20), TestContext.Current.CancellationToken)).AssertNoStackTrace().ExitCode);
    }

    [Fact]
    public async Task Nvme_perf_runs_verified_on_two_queues_over_the_socket_of_serve_nvme()
    {
        string socket = Path.Combine(_dir, "perf.sock");
        var serve = Task.Run(() => new CliRunner(_fs).Run("serve", "nvme", "--socket", socket, "--size-mb", "8", "--once"), TestContext.Current.CancellationToken);

        var r = await RunWhenListening("nvme", "perf", socket, "-w", "randrw", "-q", "8", "-c", "2", "-t", "0.3", "--verify", "--json");

        Assert.True(r.ExitCode == ExitCodes.Ok, $"exit {r.ExitCode}: {r.Out}{r.Err}");
        var d = Json.Parse(r.Out);
        Assert.Equal(socket, d.GetProperty("address").GetString());
        Assert.Equal("vfio-user", d.GetProperty("mode").GetString());
        Assert.Equal(2, d.GetProperty("queues").GetInt32());
        Assert.True(d.GetProperty("reads").GetInt64() > 0 && d.GetProperty("writes").GetInt64() > 0);
        Assert.Equal(0, d.GetProperty("errors").GetInt64());
        Assert.Equal(0, d.GetProperty("mismatches").GetInt64());
        Assert.Equal(ExitCodes.Ok, (await serve.WaitAsync(TimeSpan.FromSeconds(20), TestContext.Current.CancellationToken)).AssertNoStackTrace().ExitCode);
    }

    [Fact]
    public void Nvme_on_a_socket_nobody_serves_is_a_device_error()
    {
        var r = new CliRunner(_fs).Run("nvme", "identify", Path.Combine(_dir, "none.sock"), "--json").AssertNoStackTrace();
        Assert.Equal(ExitCodes.DeviceOrHost, r.ExitCode);
        Assert.Contains("cannot connect", r.Err, StringComparison.Ordinal);
        Assert.Equal("VfioUserConnect", Json.Parse(r.Out).GetProperty("error").GetProperty("kind").GetString());
    }

    [Fact]
    public async Task Serve_virtio_net_pair_carries_frames_between_two_clients()
    {
        string socketA = Path.Combine(_dir, "net-a.sock"), socketB = Path.Combine(_dir, "net-b.sock");
        var run = Task.Run(() => new CliRunner(_fs).Run("serve", "virtio-net", "--socket", socketA, "--peer-socket", socketB, "--queue-size", "64", "--once"),
            TestContext.Current.CancellationToken);
        using (var devA = ConnectWithRetry(socketA))
        using (var devB = ConnectWithRetry(socketB))
        using (var a = VirtioNetDevice.Open(devA))
        using (var b = VirtioNetDevice.Open(devB))
        {
            Assert.Equal("525400000001", a.MacAddress!.ToString());
            Assert.Equal("525400000002", b.MacAddress!.ToString());
            Assert.Equal(64, a.TxQueueSize);
            var frames = new PacketBuffer[1];
            Assert.Equal(1, a.Pool.Allocate(frames));
            frames[0].Length = 64;
            for (int i = 0; i < 64; i++) { frames[0].Data[i] = (byte)(i * 3); }
            Assert.Equal(1, a.Transmit(frames));
            var rx = new PacketBuffer[4];
            int got = 0;
            for (int spin = 0; got == 0 && spin < 2000; spin++) { got = b.Receive(rx); }
            Assert.Equal(1, got);
            Assert.Equal(64, rx[0].Length);
            for (int i = 0; i < 64; i++) { Assert.Equal((byte)(i * 3), rx[0].Data[i]); }
            rx[0].Free();
        }
        var r = (await run.WaitAsync(TimeSpan.FromSeconds(20), TestContext.Current.CancellationToken)).AssertNoStackTrace();
        Assert.Equal(ExitCodes.Ok, r.ExitCode);
        Assert.Contains($"Serving virtio-net (1af4:1041) over vfio-user on {socketA} and {socketB} for one client each.", r.Out, StringComparison.Ordinal);
        Assert.Contains("Served 2 client(s).", r.Out, StringComparison.Ordinal);
        Assert.False(File.Exists(socketA) || File.Exists(socketB));
    }

    [Theory]
    [InlineData("--queue-size", "100", "--queue-size must be a power of two from 2 to 32768")]
    [InlineData("--peer-socket", "SAME", "--peer-socket must differ from --socket")]
    [InlineData("--queue-size", "x", "'x'")]
    public void Serve_virtio_net_rejects_bad_arguments(string option, string value, string message)
    {
        string socket = Path.Combine(_dir, "y.sock");
        var r = new CliRunner(_fs).Run("serve", "virtio-net", "--socket", socket, option, value == "SAME" ? socket : value).AssertNoStackTrace();
        Assert.Equal(ExitCodes.Usage, r.ExitCode);
        Assert.Contains(message, r.Err, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--size-mb", "0", "--size-mb must be 1 to 1024")]
    [InlineData("--size-mb", "4096", "--size-mb must be 1 to 1024")]
    [InlineData("--block-size", "1000", "--block-size must be 512 or 4096")]
    [InlineData("--size-mb", "x", "'x'")]
    [InlineData("--block-size", "x", "'x'")]
    public void Serve_nvme_rejects_bad_sizes(string option, string value, string message)
    {
        var r = new CliRunner(_fs).Run("serve", "nvme", "--socket", Path.Combine(_dir, "x.sock"), option, value).AssertNoStackTrace();
        Assert.Equal(ExitCodes.Usage, r.ExitCode);
        Assert.Contains(message, r.Err, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(_dir, "x.sock")));
    }

    /// <summary>Runs the command against a server started just before, again while it is not listening yet (10 s at most).</summary>
    private async Task<CliResult> RunWhenListening(params string[] args)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (true)
        {
            var r = new CliRunner(_fs).Run(args).AssertNoStackTrace();
            bool notListening = r.ExitCode == ExitCodes.DeviceOrHost && r.Err.Contains("cannot connect", StringComparison.Ordinal);
            if (!notListening || DateTime.UtcNow >= deadline) { return r; }
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }
    }

    private static VfioUserDevice ConnectWithRetry(string socket, VfioUserClientOptions? options = null)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (true)
        {
            try
            {
                return VfioUserDevice.Connect(socket, options);
            }
            catch (IOException) when (DateTime.UtcNow < deadline)
            {
                Thread.Sleep(20);
            }
        }
    }
}
