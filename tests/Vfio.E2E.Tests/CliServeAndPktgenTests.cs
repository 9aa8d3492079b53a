using System.Diagnostics;
using System.Text.Json;
using Vfio.Cli.Tools.Net;
using Vfio.Devices;
using Vfio.Host;
using Vfio.Kernel;
using Vfio.Net;
using Vfio.User.Client;
using Vfio.VirtioNet;

namespace Vfio.E2E.Tests;

/// <summary>
/// A child process a test starts and always ends: every wait has a limit, and <see cref="Dispose"/> kills the whole
/// process tree if it is still running, so a command that never finishes fails its test instead of holding the guest.
/// </summary>
internal sealed class Child : IDisposable
{
    private readonly Process _process;
    private readonly Task<string> _stdout, _stderr;

    public Child(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) { psi.ArgumentList.Add(a); }
        CommandLine = $"{file} {string.Join(' ', args)}";
        _process = Process.Start(psi)!;
        _stdout = _process.StandardOutput.ReadToEndAsync();
        _stderr = _process.StandardError.ReadToEndAsync();
    }

    public static Child Vfio(params string[] args) => new("dotnet", [VfioCli.Dll, .. args]);

    public string CommandLine { get; }
    public int Id => _process.Id;
    public bool HasExited => _process.HasExited;

    /// <summary>Waits for the exit (killing the process when <paramref name="limit"/> passes first) and returns what it printed.</summary>
    public (int ExitCode, string StdOut, string StdErr) WaitForExit(TimeSpan limit)
    {
        if (!_process.WaitForExit(limit))
        {
            Kill();
            Assert.Fail($"'{CommandLine}' did not exit within {limit.TotalSeconds} s (killed); it printed: {Output()}");
        }
        _process.WaitForExit(); // the redirected streams reach their end
        return (_process.ExitCode, Output(_stdout), Output(_stderr));
    }

    private string Output() => Output(_stdout) + Output(_stderr);

    private static string Output(Task<string> stream) => stream.Wait(TimeSpan.FromSeconds(5)) ? stream.Result : "(output not closed)";

    private void Kill()
    {
        try { _process.Kill(entireProcessTree: true); }
        catch (InvalidOperationException) { } // already gone
        _process.WaitForExit(TimeSpan.FromSeconds(10));
    }

    public void Dispose()
    {
        if (!_process.HasExited) { Kill(); }
        _process.Dispose();
    }

    /// <summary>Waits until <paramref name="done"/> holds, failing after <paramref name="limit"/> or if the child exits first.</summary>
    public void WaitUntil(Func<bool> done, TimeSpan limit, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!done())
        {
            if (_process.HasExited)
            {
                _process.WaitForExit();
                Assert.Fail($"'{CommandLine}' exited ({_process.ExitCode}) before {what}: {Output()}");
            }
            Assert.True(clock.Elapsed < limit, $"{what} did not happen within {limit.TotalSeconds} s of starting '{CommandLine}'");
            Thread.Sleep(50);
        }
    }
}

/// <summary>
/// <c>vfio net pktgen</c> in the guest: frames the command sends on one lab port arrive on the other, which this
/// test drains itself with the library (a QEMU hub port whose peer posts no receive buffers stops taking frames,
/// guest-lab.md); and with nobody draining, pktgen still ends at its time limit and says so.
/// Run: lab/lab.sh run noiommu -- dotnet tests/Vfio.E2E.Tests/bin/Release/net10.0/Vfio.E2E.Tests.dll -trait lab=noiommu -class Vfio.E2E.Tests.CliPktgenTests
/// </summary>
[Trait("lab", Lab.NoIommu)]
[Trait("lab", Lab.Type1)]
[Trait("cost", Lab.CliOverDrivers)]
public sealed class CliPktgenTests
{
    private static readonly TimeSpan ChildLimit = TimeSpan.FromSeconds(120);

    /// <summary>Binds both lab virtio-net ports to vfio-pci (those already bound are left as they are).</summary>
    internal static void BindPorts()
    {
        var host = new PciHost();
        foreach (var bdf in new[] { Lab.Net0, Lab.Net1 })
        {
            var address = PciAddress.Parse(bdf);
            if (host.GetDevice(address).Driver != PciHost.VfioPciDriver) { host.BindToVfio(address); }
        }
    }

    [Fact]
    public void PktgenFramesArriveIntactOnThePeerPortAndTheJsonCountsThem()
    {
        BindPorts();
        const int Count = 3000, Size = 100;
        using var device = VfioDevice.Open(PciAddress.Parse(Lab.Net1), new VfioOpenOptions { AllowNoIommu = true });
        using var receiver = VirtioNetDevice.Open(device);
        var seen = new bool[Count];
        int received = 0, duplicates = 0, damaged = 0;
        var rx = new PacketBuffer[64];

        using var pktgen = Child.Vfio("net", "pktgen", Lab.Net0, "--count", $"{Count}", "--size", $"{Size}", "--seconds", "60", "--unsafe-noiommu", "--json");
        // Drain until pktgen has exited and the link has been quiet for a second: what it sent has arrived by then.
        var clock = Stopwatch.StartNew();
        var lastFrame = Stopwatch.StartNew();
        while (!(pktgen.HasExited && lastFrame.Elapsed > TimeSpan.FromSeconds(1)))
        {
            Assert.True(clock.Elapsed < ChildLimit, $"pktgen still running after {ChildLimit.TotalSeconds} s; {received} frames received");
            int n = receiver.Receive(rx);
            if (n == 0) { Thread.Yield(); continue; }
            lastFrame.Restart();
            for (int i = 0; i < n; i++)
            {
                if (TestFrames.TryRead(rx[i].Data, out ulong seq) && seq < Count && rx[i].Length == Size)
                {
                    if (seen[seq]) { duplicates++; } else { seen[seq] = true; received++; }
                }
                else
                {
                    damaged++;
                }
            }
            PacketPool.Free(rx.AsSpan(0, n));
        }
        var (code, stdout, stderr) = pktgen.WaitForExit(TimeSpan.FromSeconds(10));

        Assert.True(code == 0, $"pktgen exited {code}: {stdout}{stderr}");
        var d = JsonDocument.Parse(stdout).RootElement;
        Assert.Equal(PciAddress.Parse(Lab.Net0).ToString(), d.GetProperty("port").GetString());
        Assert.Equal(Count, d.GetProperty("requested").GetInt64());
        Assert.Equal(Count, d.GetProperty("sent").GetInt64());
        Assert.True(d.GetProperty("complete").GetBoolean());
        Assert.Equal(Size, d.GetProperty("frameSize").GetInt32());
        Assert.True(d.GetProperty("mpps").GetDouble() > 0, stdout);
        Assert.Equal(Lab.ExpectedModeName, d.GetProperty("mode").GetString());   // iommufd in the 612-iommufd guest
        Assert.Equal(Lab.Config == Lab.Type1, d.GetProperty("dmaIsolated").GetBoolean());
        // The hub neither drops nor duplicates: it holds frames back while the receiver has no buffers.
        Assert.Equal(0, damaged);
        Assert.Equal(0, duplicates);
        Assert.Equal(Count, received);
    }

    [Fact]
    public void PktgenEndsAtItsTimeLimitWhenNothingDrainsThePeer()
    {
        // Port 1 is bound to vfio-pci and closed (reset): QEMU's virtio-net takes no frame for it, so the hub stops
        // port 0's transmit queue once it has one frame queued (net/hub.c can_receive). The earlier pktgen could
        // only end here by its stall timeout; now it ends at --seconds with what it managed.
        BindPorts();
        const double Seconds = 3;
        var clock = Stopwatch.StartNew();
        using var pktgen = Child.Vfio("net", "pktgen", Lab.Net0, "--count", "100000000", "--seconds", $"{Seconds}", "--unsafe-noiommu", "--json");
        var (code, stdout, stderr) = pktgen.WaitForExit(ChildLimit);
        clock.Stop();

        Assert.True(code == 2, $"pktgen exited {code}: {stdout}{stderr}");
        Assert.True(clock.Elapsed > TimeSpan.FromSeconds(Seconds), $"pktgen returned after {clock.Elapsed}");
        var d = JsonDocument.Parse(stdout).RootElement;
        Assert.False(d.GetProperty("complete").GetBoolean());
        long sent = d.GetProperty("sent").GetInt64();
        Assert.InRange(sent, 0, 100_000_000 - 1);
        Assert.InRange(d.GetProperty("seconds").GetDouble(), Seconds, Seconds + 30);
        Assert.Contains($"only {sent} of 100000000 frames were sent", stderr, StringComparison.Ordinal);
        VfioCli.AssertNoStackTrace(stderr);
    }
}

/// <summary>
/// <c>vfio serve edu</c> in the guest: a vfio-user client (the library's <see cref="VfioUserDevice"/>) reads the
/// served edu's ID and computes a factorial through it; the server's exit code and JSON say what it served.
/// Run: lab/lab.sh run noiommu -- dotnet tests/Vfio.E2E.Tests/bin/Release/net10.0/Vfio.E2E.Tests.dll -trait lab=noiommu -class Vfio.E2E.Tests.CliServeTests
/// </summary>
[Trait("lab", Lab.NoIommu)]
[Trait("cost", Lab.CliOverDrivers)]
public sealed class CliServeTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);

    private static string SocketPath() => Path.Combine(Path.GetTempPath(), $"vfio-e2e-edu-{Environment.ProcessId}-{Guid.NewGuid():N}.sock");

    private static void UseEdu(string socket)
    {
        using var dev = ConnectWhenListening(socket);
        Assert.Equal(0x1234, dev.Config.VendorId);
        Assert.Equal(0x11e8, dev.Config.DeviceId);
        using var bar0 = dev.OpenRegion(PciRegion.Bar0);
        var edu = new Edu(bar0);
        Assert.Equal(0x010000edu, edu.Id);
        Assert.Equal(3_628_800u, edu.ComputeFactorial(10, TimeSpan.FromSeconds(10)));
    }

    /// <summary>
    /// Connects once the server listens: its socket file appears at bind(2), a moment before listen(2), and a connect
    /// in between is refused (seen once under TCG, 2026-12-07).
    /// </summary>
    private static VfioUserDevice ConnectWhenListening(string socket)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                return VfioUserDevice.Connect(socket);
            }
            catch (IOException e) when (e.InnerException is System.Net.Sockets.SocketException
                { SocketErrorCode: System.Net.Sockets.SocketError.ConnectionRefused } && clock.Elapsed < TimeSpan.FromSeconds(10))
            {
                Thread.Sleep(100);
            }
        }
    }

    [Fact]
    public void ServeOnceAnswersAClientThenExitsWithItsJson()
    {
        string socket = SocketPath();
        using var server = Child.Vfio("serve", "edu", "--socket", socket, "--once", "--json");
        server.WaitUntil(() => File.Exists(socket), Limit, "the socket appeared");

        UseEdu(socket);
        var (code, stdout, stderr) = server.WaitForExit(Limit);

        Assert.True(code == 0, $"serve exited {code}: {stdout}{stderr}");
        var (listening, d) = ServeDocuments(stdout);
        Assert.Equal("listening", listening.GetProperty("state").GetString());
        Assert.Equal("stopped", d.GetProperty("state").GetString());
        Assert.Equal("edu", d.GetProperty("device").GetString());
        Assert.Equal("1234", d.GetProperty("vendorId").GetString());
        Assert.Equal("11e8", d.GetProperty("deviceId").GetString());
        Assert.Equal(socket, d.GetProperty("socket").GetString());
        Assert.Equal(1, d.GetProperty("clients").GetInt32());
        Assert.False(File.Exists(socket), "the socket file was left behind");
    }

    [Fact]
    public void ServeKeepsServingClientsUntilSigtermThenSaysHowMany()
    {
        string socket = SocketPath();
        using var server = Child.Vfio("serve", "edu", "--socket", socket, "--json");
        server.WaitUntil(() => File.Exists(socket), Limit, "the socket appeared");

        UseEdu(socket);
        UseEdu(socket);
        Assert.False(server.HasExited, "serve without --once exited after its clients");
        Assert.Equal(0, Lab.Run("kill", "-TERM", $"{server.Id}").ExitCode);
        var (code, stdout, stderr) = server.WaitForExit(Limit);

        Assert.True(code == 0, $"serve exited {code} after SIGTERM: {stdout}{stderr}");
        var (_, d) = ServeDocuments(stdout);
        Assert.Equal("stopped", d.GetProperty("state").GetString());
        Assert.Equal(2, d.GetProperty("clients").GetInt32());
        Assert.False(File.Exists(socket), "the socket file was left behind");
    }

    /// <summary>serve --json prints two documents one after the other: listening, then stopped.</summary>
    private static (JsonElement Listening, JsonElement Stopped) ServeDocuments(string stdout)
    {
        var reader = new Utf8JsonReader(System.Text.Encoding.UTF8.GetBytes(stdout), new JsonReaderOptions { AllowMultipleValues = true });
        var listening = JsonElement.ParseValue(ref reader);
        Assert.True(reader.Read(), $"expected a second JSON document: {stdout}");
        var stopped = JsonElement.ParseValue(ref reader);
        Assert.False(reader.Read(), $"expected two JSON documents: {stdout}");
        return (listening, stopped);
    }
}
