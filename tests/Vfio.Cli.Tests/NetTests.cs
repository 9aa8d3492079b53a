using Vfio.Tests.Host;
using Vfio.VirtioNet.Tests.Emulation;

namespace Vfio.Cli.Tests;

/// <summary>
/// <c>vfio net pktgen|fwd</c>: argument validation (bad arguments exit 1 before any device is opened), and the JSON
/// documents against the virtio-net driver's in-process emulated ports (two, connected as on one hub).
/// </summary>
// The net classes run one after the other: both keep cores busy forwarding, and some of NetTests end by a time limit.
[Collection("net")]
public sealed class NetTests : IDisposable
{
    private const string PortA = "0000:00:04.0";
    private const string PortB = "0000:00:05.0";
    private readonly FakeSysfs _fs = new();
    private readonly CliRunner _cli;
    private int _opens;

    public NetTests()
    {
        _cli = new CliRunner(_fs)
        {
            OpenDevice = (_, _) =>
            {
                _opens++;
                throw new InvalidOperationException("the device must not be opened");
            },
        };
    }

    public void Dispose() => _fs.Dispose();

    private CliResult Run(params string[] args) => _cli.Run(args).AssertNoStackTrace();

    private void AssertUsage(CliResult r)
    {
        Assert.True(r.ExitCode == ExitCodes.Usage, $"exit {r.ExitCode}: {r.Out}{r.Err}");
        Assert.StartsWith("vfio: ", r.Err, StringComparison.Ordinal);
        Assert.Equal(0, _opens);
    }

    [Theory]
    [InlineData("")]
    [InlineData("--count 0")]
    [InlineData("--count -5")]
    [InlineData("--size 10")]
    [InlineData("--size 1515")]
    [InlineData("--size abc")]
    [InlineData("--burst 0")]
    [InlineData("--burst 100000")]
    [InlineData("--seconds 0")]
    [InlineData("--seconds x")]
    [InlineData("0000:00:04.0 0000:00:05.0")]
    public void Pktgen_bad_arguments_are_usage_errors(string args)
    {
        string[] rest = args.Length == 0 ? [] : args.Split(' ');
        string[] all = args.Length == 0 ? ["net", "pktgen"] : args.StartsWith("--", StringComparison.Ordinal) ? ["net", "pktgen", PortA, .. rest] : ["net", "pktgen", .. rest];
        AssertUsage(Run(all));
    }

    [Theory]
    [InlineData("")]
    [InlineData("0000:00:04.0")]
    [InlineData("0000:00:04.0 00:zz.0")]
    [InlineData("0000:00:04.0 0000:00:04.0")]
    [InlineData("0000:00:04.0 00:04.0")]
    [InlineData("0000:00:04.0 0000:00:05.0 -t 0")]
    [InlineData("0000:00:04.0 0000:00:05.0 -t -1")]
    [InlineData("0000:00:04.0 0000:00:05.0 -t x")]
    [InlineData("0000:00:04.0 0000:00:05.0 --seconds 100000")]
    [InlineData("0000:00:04.0 0000:00:05.0 --burst 0")]
    [InlineData("0000:00:04.0 0000:00:05.0 --burst 513")]
    [InlineData("0000:00:04.0 0000:00:05.0 -t 2 --warmup 2")]
    [InlineData("0000:00:04.0 0000:00:05.0 --warmup 10")]
    [InlineData("0000:00:04.0 0000:00:05.0 --warmup -1")]
    [InlineData("0000:00:04.0 0000:00:05.0 --warmup x")]
    [InlineData("0000:00:04.0 0000:00:05.0 --queues 0")]
    [InlineData("0000:00:04.0 0000:00:05.0 -q 65")]
    [InlineData("0000:00:04.0 0000:00:05.0 --tx-first 0")]
    [InlineData("0000:00:04.0 0000:00:05.0 --tx-first 1025")]
    [InlineData("0000:00:04.0 0000:00:05.0 --pool -1")]
    [InlineData("0000:00:04.0 0000:00:05.0 --pool x")]
    public void Fwd_bad_arguments_are_usage_errors(string args)
    {
        string[] rest = args.Length == 0 ? [] : args.Split(' ');
        AssertUsage(Run(["net", "fwd", .. rest]));
    }

    [Fact]
    public void Bad_arguments_with_json_print_an_error_document()
    {
        var r = Run("net", "fwd", PortA, PortB, "-t", "0", "--json");
        AssertUsage(r);
        var e = Json.Parse(r.Out).GetProperty("error");
        Assert.Equal(ExitCodes.Usage, e.GetProperty("exitCode").GetInt32());
    }

    [Fact]
    public void Help_lists_the_commands()
    {
        var r = Run("net", "--help");
        Assert.Equal(ExitCodes.Ok, r.ExitCode);
        Assert.Contains("pktgen", r.Out, StringComparison.Ordinal);
        Assert.Contains("fwd", r.Out, StringComparison.Ordinal);
        Assert.Contains("stats", r.Out, StringComparison.Ordinal);
        Assert.Contains("virtio-net (1af4:1041, 1af4:1000)", r.Out, StringComparison.Ordinal);
        Assert.Equal(0, _opens);
    }

    [Fact]
    public void Fwd_json_reports_packets_both_ways_on_emulated_ports()
    {
        var (a, b) = EmulatedVirtioNet.CreatePair();
        var opened = new List<PciAddress>();
        var cli = new CliRunner(_fs)
        {
            OpenDevice = (address, _) =>
            {
                opened.Add(address);
                return address == a.Address ? a : address == b.Address ? b : throw new InvalidOperationException($"unexpected {address}");
            },
        };
        var r = cli.Run("net", "fwd", a.Address.ToString(), b.Address.ToString(), "-t", "0.3", "--burst", "16", "--json").AssertNoStackTrace();

        Assert.True(r.ExitCode == ExitCodes.Ok, $"exit {r.ExitCode}: {r.Out}{r.Err}");
        Assert.Equal([a.Address, b.Address], opened);
        var d = Json.Parse(r.Out);
        Assert.Equal(a.Address.ToString(), d.GetProperty("portA").GetString());
        Assert.Equal(b.Address.ToString(), d.GetProperty("portB").GetString());
        Assert.Equal(16, d.GetProperty("burst").GetInt32());
        Assert.True(d.GetProperty("seconds").GetDouble() > 0);
        long packets = d.GetProperty("packets").GetInt64();
        Assert.True(packets > 0, r.Out);
        Assert.Equal(packets, d.GetProperty("aToB").GetInt64() + d.GetProperty("bToA").GetInt64());
        Assert.True(d.GetProperty("aToB").GetInt64() > 0 && d.GetProperty("bToA").GetInt64() > 0, r.Out);
        Assert.True(d.GetProperty("mpps").GetDouble() > 0, r.Out);
        foreach (var name in new[] { "mode", "dmaIsolated", "dropped", "steadyMpps", "rounds" }) { Assert.True(d.TryGetProperty(name, out _), name); }
        Assert.Equal(0.075, d.GetProperty("warmupSeconds").GetDouble());   // a quarter of -t when that is under 1 s
        Assert.Equal("virtio-net", d.GetProperty("driverA").GetString());
        Assert.Equal("virtio-net", d.GetProperty("driverB").GetString());
        Assert.Equal(1, d.GetProperty("queuePairs").GetInt32());
    }

    [Fact]
    public void Fwd_tx_first_fills_the_rings_from_a_pool_of_the_size_asked_and_counts_doorbells()
    {
        var (a, b) = EmulatedVirtioNet.CreatePair(queueSize: 256);
        var cli = new CliRunner(_fs) { OpenDevice = (address, _) => address == a.Address ? a : b };
        var full = Json.Parse(Ok(cli.Run("net", "fwd", a.Address.ToString(), b.Address.ToString(), "-t", "0.3", "--tx-first", "8", "--pool", "4096", "--json")));
        // 8 bursts of 32 on each port: the 256-entry transmit rings start full, as testpmd's `start tx_first 8` fills them.
        Assert.Equal(2 * 8 * 32, full.GetProperty("txFirstPackets").GetInt64());
        Assert.Equal(4096, full.GetProperty("poolBuffers").GetInt32());
        long packets = full.GetProperty("packets").GetInt64(), doorbells = full.GetProperty("doorbells").GetInt64();
        Assert.True(packets > 0 && doorbells > 0, $"{packets} packets, {doorbells} doorbells");
        Assert.Equal(Math.Round((double)doorbells / packets, 4), full.GetProperty("doorbellsPerPacket").GetDouble());

        var (c, d) = EmulatedVirtioNet.CreatePair(queueSize: 256);
        cli = new CliRunner(_fs) { OpenDevice = (address, _) => address == c.Address ? c : d };
        var one = Json.Parse(Ok(cli.Run("net", "fwd", c.Address.ToString(), d.Address.ToString(), "-t", "0.2", "--json")));
        Assert.Equal(2 * 32, one.GetProperty("txFirstPackets").GetInt64());
        // The driver's default pool is its own rings' worth (two receive rings' and a transmit ring's buffers).
        Assert.Equal(3 * 256, one.GetProperty("poolBuffers").GetInt32());
    }

    private static string Ok(CliResult r)
    {
        r.AssertNoStackTrace();
        Assert.True(r.ExitCode == ExitCodes.Ok, $"exit {r.ExitCode}: {r.Out}{r.Err}");
        return r.Out;
    }

    [Fact]
    public void Fwd_warmup_sets_what_the_steady_rate_leaves_out()
    {
        var (a, b) = EmulatedVirtioNet.CreatePair();
        var cli = new CliRunner(_fs) { OpenDevice = (address, _) => address == a.Address ? a : b };
        var r = cli.Run("net", "fwd", a.Address.ToString(), b.Address.ToString(), "-t", "0.4", "--warmup", "0.25", "--json").AssertNoStackTrace();

        Assert.True(r.ExitCode == ExitCodes.Ok, $"exit {r.ExitCode}: {r.Out}{r.Err}");
        var d = Json.Parse(r.Out);
        Assert.Equal(0.25, d.GetProperty("warmupSeconds").GetDouble());
        Assert.True(d.GetProperty("steadyMpps").GetDouble() > 0, r.Out);
    }

    [Fact]
    public void Pktgen_json_reports_the_frames_sent()
    {
        var (a, _) = EmulatedVirtioNet.CreatePair();
        var cli = new CliRunner(_fs) { OpenDevice = (_, _) => a };
        var r = cli.Run("net", "pktgen", a.Address.ToString(), "--count", "500", "--size", "128", "--json").AssertNoStackTrace();

        Assert.True(r.ExitCode == ExitCodes.Ok, $"exit {r.ExitCode}: {r.Out}{r.Err}");
        var d = Json.Parse(r.Out);
        Assert.Equal(a.Address.ToString(), d.GetProperty("port").GetString());
        Assert.Equal(500, d.GetProperty("requested").GetInt64());
        Assert.Equal(500, d.GetProperty("sent").GetInt64());
        Assert.True(d.GetProperty("complete").GetBoolean());
        Assert.Equal(128, d.GetProperty("frameSize").GetInt32());
        Assert.Equal("virtio-net", d.GetProperty("driver").GetString());
    }

    [Fact]
    public void Pktgen_ends_at_its_time_limit_when_the_peer_does_not_drain_and_says_so()
    {
        var (a, b) = EmulatedVirtioNet.CreatePair(queueSize: 64);
        // B is up with its receive buffers posted but nobody reads it: once they are full, A's link stalls.
        using var peer = VirtioNet.VirtioNetDevice.Open(b);
        var cli = new CliRunner(_fs) { OpenDevice = (_, _) => a };
        var r = cli.Run("net", "pktgen", a.Address.ToString(), "--count", "1000000", "--seconds", "0.3", "--json").AssertNoStackTrace();

        Assert.True(r.ExitCode == ExitCodes.DeviceOrHost, $"exit {r.ExitCode}: {r.Out}{r.Err}");
        var d = Json.Parse(r.Out);
        Assert.False(d.GetProperty("complete").GetBoolean());
        Assert.Equal(64, d.GetProperty("sent").GetInt64());
        Assert.Equal(1_000_000, d.GetProperty("requested").GetInt64());
        Assert.Contains("only 64 of 1000000 frames were sent in 0.3 s", r.Err, StringComparison.Ordinal);
    }

    [Fact]
    public void Fwd_prints_a_summary_table()
    {
        var (a, b) = EmulatedVirtioNet.CreatePair();
        var cli = new CliRunner(_fs) { OpenDevice = (address, _) => address == a.Address ? a : b };
        var r = cli.Run("net", "fwd", a.Address.ToString(), b.Address.ToString(), "-t", "0.2").AssertNoStackTrace();

        Assert.True(r.ExitCode == ExitCodes.Ok, $"exit {r.ExitCode}: {r.Out}{r.Err}");
        Assert.Contains("Mpps", r.Out, StringComparison.Ordinal);
        Assert.Contains($"{a.Address} -> {b.Address}", r.Out, StringComparison.Ordinal);
        Assert.Contains("total", r.Out, StringComparison.Ordinal);
    }
}
