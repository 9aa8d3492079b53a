using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Vfio.Host;

namespace Vfio.E2E.Tests;

/// <summary>
/// What the TAP tests share (<see cref="NetTapTests"/> on the virtio-net ports, <see cref="IgbTapTests"/> on the igb
/// ports): network namespaces of their own (gone with the object), <c>vfio net tap</c> runs, pings, a checked TCP copy
/// and iperf3, all on IPv6 link-local addresses inside the guest.
/// </summary>
internal sealed class TapLab : IDisposable
{
    /// <summary>Bytes of the checked TCP copy.</summary>
    public const int TransferBytes = 64 << 20;

    private static readonly PciHost Host = new();
    private readonly List<Process> _started = [];
    private readonly string[] _namespaces;

    /// <summary>Loads tun and creates <paramref name="namespaces"/> (a leftover of an earlier run is deleted first), loopback up.</summary>
    public TapLab(params string[] namespaces)
    {
        _namespaces = namespaces;
        Must("modprobe", "tun");
        foreach (string ns in namespaces)
        {
            Lab.Run("ip", "netns", "del", ns); // left over from an earlier test: ignore "does not exist"
            Must("ip", "netns", "add", ns);
            Must("ip", "-n", ns, "link", "set", "lo", "up");
        }
    }

    /// <summary>Kills what is still running and deletes the namespaces (a physical interface in one returns to the initial namespace).</summary>
    public void Dispose()
    {
        foreach (var p in _started)
        {
            if (!p.HasExited) { p.Kill(entireProcessTree: true); p.WaitForExit(); }
            p.Dispose();
        }
        foreach (string ns in _namespaces) { Lab.Run("ip", "netns", "del", ns); }
    }

    /// <summary>
    /// Starts <c>vfio net tap</c> on <paramref name="bdf"/> (bound to vfio-pci first if it is not) inside namespace
    /// <paramref name="ns"/> as interface <paramref name="name"/>, and waits for the interface to be up there.
    /// </summary>
    public Process StartTap(string bdf, string ns, string name, string? pcap = null, bool offload = false)
    {
        if (Host.GetDevice(PciAddress.Parse(bdf)).Driver != PciHost.VfioPciDriver) { Host.BindToVfio(PciAddress.Parse(bdf)); }
        var args = new List<string> { "netns", "exec", ns, "dotnet", VfioCli.Dll, "net", "tap", "--port", bdf, "--name", name, "--unsafe-noiommu", "--json" };
        if (pcap is not null) { args.AddRange(["--capture", pcap]); }
        if (offload) { args.Add("--offload"); }
        var p = Start("ip", [.. args]);
        WaitForLine(p, "bridging", stderr: true);
        Assert.Contains("UP", Lab.Run("ip", "-n", ns, "link", "show", name, "up").Output, StringComparison.Ordinal);
        return p;
    }

    public static void AssertPings(string ns, string target, int count = 100)
    {
        var (exit, output) = Lab.Run("ip", "netns", "exec", ns, "ping", "-6", "-c", count.ToString(CultureInfo.InvariantCulture), "-i", "0.05", "-W", "5", target);
        Assert.True(exit == 0 && output.Contains($"{count} received, 0% packet loss", StringComparison.Ordinal), $"ping {target} from {ns}: {output}");
    }

    /// <summary>
    /// Sends <see cref="TransferBytes"/> pseudo-random bytes over one TCP connection and checks the receiver's SHA-256
    /// and byte count against the sender's (python3 of the host root on both ends).
    /// </summary>
    public void CopyAndVerify(string from, string to, string toAddress, string toInterface)
    {
        const string Receiver = """
            import hashlib, socket, sys
            s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("::", 5201 + 1)); s.listen(1); print("listening", flush=True)
            c, _ = s.accept(); h = hashlib.sha256(); n = 0
            while True:
                b = c.recv(1 << 16)
                if not b: break
                h.update(b); n += len(b)
            print(n, h.hexdigest(), flush=True)
            """;
        const string Sender = """
            import hashlib, random, socket, sys
            addr, total = sys.argv[1], int(sys.argv[2])
            rnd = random.Random(20261206); h = hashlib.sha256(); n = 0
            s = socket.create_connection((addr, 5201 + 1), timeout=120)
            while n < total:
                b = rnd.randbytes(min(1 << 16, total - n)); s.sendall(b); h.update(b); n += len(b)
            s.shutdown(socket.SHUT_WR); s.recv(1); s.close()
            print(n, h.hexdigest(), flush=True)
            """;
        var receiver = Start("ip", "netns", "exec", to, "python3", "-c", Receiver);
        WaitForLine(receiver, "listening");
        var (exit, sent) = Lab.Run("ip", "netns", "exec", from, "python3", "-c", Sender, $"{toAddress}%{toInterface}", TransferBytes.ToString(CultureInfo.InvariantCulture));
        Assert.True(exit == 0, $"sender: {sent}");
        Assert.True(receiver.WaitForExit(TimeSpan.FromMinutes(5)), "the receiver did not finish");
        string received = receiver.StandardOutput.ReadToEnd().Trim();
        Assert.Equal(sent.Trim(), received);
        Assert.StartsWith(TransferBytes.ToString(CultureInfo.InvariantCulture) + " ", received, StringComparison.Ordinal);
    }

    /// <summary>iperf3's TCP rate for 64 MiB from <paramref name="client"/> to a one-shot server in <paramref name="server"/>, in Mbit/s.</summary>
    public double Iperf(string client, string server, string serverAddress, bool reverse = false)
    {
        var s = Start("ip", "netns", "exec", server, "iperf3", "-s", "-1", "--forceflush");
        WaitForLine(s, "Server listening");
        // -R: the server sends, the client receives (here: the kernel's port to ours, into the TAP).
        var (exit, output) = reverse
            ? Lab.Run("ip", "netns", "exec", client, "iperf3", "-c", serverAddress, "-n", "64M", "-J", "-R")
            : Lab.Run("ip", "netns", "exec", client, "iperf3", "-c", serverAddress, "-n", "64M", "-J");
        Assert.True(exit == 0, $"iperf3: {output}");
        Assert.True(s.WaitForExit(TimeSpan.FromMinutes(2)), "the iperf3 server did not finish");
        var end = JsonDocument.Parse(output[output.IndexOf('{', StringComparison.Ordinal)..]).RootElement.GetProperty("end");
        // -n counts what the client sends; the server's sum leaves out what it read after its last report interval.
        Assert.True(end.GetProperty("sum_sent").GetProperty("bytes").GetInt64() >= TransferBytes, output);
        Assert.True(end.GetProperty("sum_received").GetProperty("bytes").GetInt64() > 0, output);
        return end.GetProperty("sum_received").GetProperty("bits_per_second").GetDouble() / 1e6;
    }

    public Process Start(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in args) { psi.ArgumentList.Add(a); }
        var p = Process.Start(psi)!;
        _started.Add(p);
        return p;
    }

    /// <summary>Reads <paramref name="p"/>'s standard output until a line contains <paramref name="text"/> (the server or command is ready).</summary>
    public static void WaitForLine(Process p, string text, bool stderr = false)
    {
        var reader = stderr ? p.StandardError : p.StandardOutput;
        var read = Task.Run(() =>
        {
            while (reader.ReadLine() is { } line)
            {
                if (line.Contains(text, StringComparison.Ordinal)) { return true; }
            }
            return false;
        });
        Assert.True(read.Wait(TimeSpan.FromMinutes(3)) && read.Result, $"no '{text}' from {p.StartInfo.FileName} {string.Join(' ', p.StartInfo.ArgumentList)}");
    }

    /// <summary>iperf3's TCP rate each way between <paramref name="client"/> and <paramref name="server"/>, in Mbit/s: the client sending, then (-R) receiving.</summary>
    public (double Forward, double Reverse) IperfBothWays(string client, string server, string serverAddress) =>
        (Iperf(client, server, serverAddress), Iperf(client, server, serverAddress, reverse: true));

    /// <summary><see cref="CopyAndVerify"/> from <paramref name="from"/> to <paramref name="to"/>, then <see cref="IperfBothWays"/> on the same path.</summary>
    public (double Forward, double Reverse) CopyAndMeasure(string from, string to, string toAddress, string toInterface)
    {
        CopyAndVerify(from, to, toAddress, toInterface);
        return IperfBothWays(from, to, $"{toAddress}%{toInterface}");
    }

    /// <summary>Stops a <c>vfio ... --json</c> command (<see cref="Stop"/>), which must exit 0, and returns its document and what it printed.</summary>
    public static (JsonElement Json, string StdOut) StopJson(Process p)
    {
        var stop = Stop(p);
        Assert.True(stop.ExitCode == 0, stop.Output);
        return (JsonDocument.Parse(stop.StdOut).RootElement, stop.StdOut);
    }

    /// <summary>Stops a long-running vfio command with SIGINT (as Ctrl-C) and returns what it printed.</summary>
    public static (int ExitCode, string StdOut, string Output) Stop(Process p)
    {
        Lab.Run("kill", "-INT", p.Id.ToString(CultureInfo.InvariantCulture));
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        Assert.True(p.WaitForExit(TimeSpan.FromMinutes(2)), "the command did not stop on SIGINT");
        return (p.ExitCode, stdout.Result, stdout.Result + stderr.Result);
    }

    public static void Must(string file, params string[] args)
    {
        var (exit, output) = Lab.Run(file, args);
        Assert.True(exit == 0, $"{file} {string.Join(' ', args)} exited {exit}: {output}");
    }
}
