using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Vfio.Kernel;
using Vfio.Nvme;
using Vfio.Spec.Nvme;

namespace Vfio.E2E.Tests;

/// <summary>
/// Issue 17's acceptance test: one controller read through the kernel's nvme driver with nvme-cli (Debian's nvme-cli
/// 2.3, from the host root) and then, rebound to vfio-pci, with <c>vfio nvme ... --json</c>; every field nvme-cli
/// reports must be equal, but for those listed below with why they may move. Then changes made by <c>vfio nvme</c>
/// (format, attach) are seen by the kernel's <c>nvme list</c> after rebinding, a SMART critical warning set through
/// QMP reaches the driver as an asynchronous event, and bad input is one line with exit code 2. The controller is
/// VFIO_LAB_NVME3 (QEMU 7.2's nvme in an NVM subsystem, nsid 2 detached), which no other test touches.
/// </summary>
[Trait("lab", Lab.NoIommu)]
[Trait("cost", Lab.CliOverDrivers)]
public sealed partial class CliNvmeManagementTests
{
    private static string Bdf => Lab.Nvme3;

    /// <summary>Fields that change with time or with use between the two reads, each with its reason.</summary>
    private static readonly Dictionary<string, string> SmartLogMoves = new()
    {
        ["temperature"] = "a sensor reading, free to change between two reads",
        ["data_units_read"] = "counts the reads the kernel's partition scan and udev probes made",
        ["data_units_written"] = "counts writes, if anything wrote",
        ["host_read_commands"] = "counts the kernel's own reads (partition scan, udev)",
        ["host_write_commands"] = "counts writes",
        ["controller_busy_time"] = "grows with the commands either driver sent",
        ["power_on_hours"] = "grows with time",
        ["unsafe_shutdowns"] = "counts a driver that stopped the controller without a shutdown notification",
        ["num_err_log_entries"] = "counts errors of commands either driver sent (probing for optional features)",
    };

    private static readonly Dictionary<string, string> ErrorLogMoves = new()
    {
        ["error_count"] = "the error counter moves with any failed command, from either driver",
    };

    /// <summary>Features: the ones a driver sets when it starts, so each driver reads back its own choice.</summary>
    private static readonly Dictionary<int, string> FeatureMoves = new()
    {
        [0x07] = "Number of Queues: each driver asks for its own count when it brings the controller up",
        [0x0B] = "Asynchronous Event Configuration: the kernel enables the notices it handles, this driver SMART warnings as well",
    };

    // ------------------------------------------------------------------------------------------------ binding

    private static string ToKernel()
    {
        if (Lab.Driver(Bdf) != "nvme")
        {
            var (code, output) = VfioCli.Run("unbind", Bdf, "--driver", "nvme");
            Assert.True(code == 0, output);
        }
        // The controller, then its namespace 1 (path device nvmeXcYn1 under native multipath, or nvmeXn1).
        var deadline = DateTime.UtcNow.AddSeconds(60);
        string dir = Path.Combine(Lab.DeviceDir(Bdf), "nvme");
        while (true)
        {
            var ctrl = Directory.Exists(dir) ? Directory.GetDirectories(dir).Select(Path.GetFileName).FirstOrDefault() : null;
            if (ctrl is not null && File.Exists($"/dev/{ctrl}")
                && Directory.GetDirectories(Path.Combine(dir, ctrl)).Any(d => NamespaceDir().IsMatch(Path.GetFileName(d))))
            {
                return $"/dev/{ctrl}";
            }
            Assert.True(DateTime.UtcNow < deadline, $"{Bdf}: the kernel's nvme driver did not bring up the controller and namespace 1 within 60 s");
            Thread.Sleep(200);
        }
    }

    [GeneratedRegex(@"^nvme\d+(c\d+)?n1$")]
    private static partial Regex NamespaceDir();

    private static void ToVfio()
    {
        var action = VfioCli.Json("bind", Bdf).GetProperty("devices")[0].GetProperty("action").GetString();
        Assert.Contains(action, new[] { "bound", "unchanged" });
    }

    private static JsonElement NvmeCli(params string[] args)
    {
        var (code, stdout, stderr) = Lab.RunSplit("nvme", args);
        Assert.True(code == 0, $"nvme {string.Join(' ', args)} exited {code}: {stdout}{stderr}");
        return JsonDocument.Parse(stdout).RootElement.Clone();
    }

    private static JsonElement Ours(params string[] args) => VfioCli.Json(["nvme", .. args, Bdf, "--unsafe-noiommu"]);

    private static (int Code, string StdErr) OursFails(params string[] args)
    {
        var (code, stdout, stderr) = Lab.RunSplit("dotnet", [VfioCli.Dll, "nvme", .. args, Bdf, "--unsafe-noiommu"]);
        VfioCli.AssertNoStackTrace(stdout + stderr);
        // The No-IOMMU warning every open prints is not the error: what is left must be the one line.
        var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => !l.StartsWith("vfio: warning:", StringComparison.Ordinal));
        return (code, string.Join('\n', lines));
    }

    /// <summary>
    /// Every field of <paramref name="kernel"/> must be in <paramref name="ours"/> with the same value (numbers by their
    /// text, so 128-bit counters compare exactly), recursively, and <paramref name="ours"/> may have no field nvme-cli lacks;
    /// <paramref name="moves"/> lists the fields allowed to differ.
    /// </summary>
    private static void AssertSame(string what, JsonElement kernel, JsonElement ours, IReadOnlyDictionary<string, string>? moves = null, List<string>? differences = null)
    {
        var found = differences ?? [];
        Compare(what, kernel, ours, moves ?? new Dictionary<string, string>(), found);
        if (differences is null) { Assert.True(found.Count == 0, $"{what}: vfio nvme and nvme-cli differ:\n  " + string.Join("\n  ", found)); }
    }

    private static void Compare(string path, JsonElement k, JsonElement o, IReadOnlyDictionary<string, string> moves, List<string> found)
    {
        if (k.ValueKind != o.ValueKind)
        {
            found.Add($"{path}: nvme-cli has a {k.ValueKind} ({k.GetRawText()}), vfio a {o.ValueKind} ({o.GetRawText()})");
            return;
        }
        switch (k.ValueKind)
        {
            case JsonValueKind.Object:
                var ours = o.EnumerateObject().ToDictionary(p => p.Name, p => p.Value);
                foreach (var p in k.EnumerateObject())
                {
                    if (!ours.Remove(p.Name, out var v)) { found.Add($"{path}.{p.Name}: missing (nvme-cli: {p.Value.GetRawText()})"); continue; }
                    if (moves.ContainsKey(p.Name)) { continue; }
                    Compare($"{path}.{p.Name}", p.Value, v, moves, found);
                }
                foreach (var extra in ours.Keys) { found.Add($"{path}.{extra}: not in nvme-cli's document"); }
                break;
            case JsonValueKind.Array:
                var ka = k.EnumerateArray().ToList();
                var oa = o.EnumerateArray().ToList();
                if (ka.Count != oa.Count) { found.Add($"{path}: {ka.Count} entries from nvme-cli, {oa.Count} from vfio"); return; }
                for (int i = 0; i < ka.Count; i++) { Compare($"{path}[{i}]", ka[i], oa[i], moves, found); }
                break;
            default:
                if (k.GetRawText() != o.GetRawText()) { found.Add($"{path}: nvme-cli {k.GetRawText()}, vfio {o.GetRawText()}"); }
                break;
        }
    }

    [GeneratedRegex(@"Combination\[(\d+)\]:([0-9a-fA-F]+)")]
    private static partial Regex IocsLine();

    [GeneratedRegex(@"value:(?:0x)?([0-9a-fA-F]{8})")]
    private static partial Regex FeatureValue();

    private static uint KernelFeature(string dev, int fid)
    {
        var (code, output) = Lab.Run("nvme", "get-feature", dev, "-f", fid.ToString(CultureInfo.InvariantCulture));
        Assert.True(code == 0, $"nvme get-feature -f {fid}: {output}");
        var m = FeatureValue().Match(output);
        Assert.True(m.Success, $"nvme get-feature -f {fid} printed no value: {output}");
        return uint.Parse(m.Groups[1].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
    }

    // ------------------------------------------------------------------------------------------------ the tests

    [Fact]
    public void IdentifyLogsAndFeaturesReadTheSameThroughTheKernelAndThroughVfio()
    {
        string dev = ToKernel();
        var k = new Dictionary<string, JsonElement>
        {
            ["id-ctrl"] = NvmeCli("id-ctrl", dev, "-o", "json"),
            ["id-ns"] = NvmeCli("id-ns", dev, "-n", "1", "-o", "json"),
            ["ns-descs"] = NvmeCli("ns-descs", dev, "-n", "1", "-o", "json"),
            ["smart-log"] = NvmeCli("smart-log", dev, "-o", "json"),
            ["error-log"] = NvmeCli("error-log", dev, "-o", "json"),
            ["fw-log"] = NvmeCli("fw-log", dev, "-o", "json"),
            ["nvm-id-ctrl"] = NvmeCli("nvm-id-ctrl", dev, "-o", "json"),
        };
        // nvme-cli 2.3 prints id-iocs as text only: "I/O Command Set Combination[N]:VECTOR" (hex).
        var (iocsCode, iocsText) = Lab.Run("nvme", "id-iocs", dev);
        Assert.True(iocsCode == 0, iocsText);
        var kernelIocs = IocsLine().Matches(iocsText).Select(m => (int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture),
            ulong.Parse(m.Groups[2].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture))).ToList();
        Assert.NotEmpty(kernelIocs);
        int[] fids = [0x01, 0x02, 0x04, 0x06, 0x07, 0x08, 0x0B];
        var kernelFeatures = fids.ToDictionary(f => f, f => KernelFeature(dev, f));
        Lab.Report($"nvme-cli read {Bdf} ({dev}): id-ctrl {k["id-ctrl"].EnumerateObject().Count()} fields, smart-log {k["smart-log"].EnumerateObject().Count()}");

        ToVfio();
        var differences = new List<string>();
        AssertSame("id-ctrl", k["id-ctrl"], Ours("id-ctrl"), null, differences);
        AssertSame("id-ns", k["id-ns"], Ours("id-ns", "--nsid", "1"), null, differences);
        AssertSame("ns-descs", k["ns-descs"], Ours("ns-descs", "--nsid", "1"), null, differences);
        AssertSame("smart-log", k["smart-log"], Ours("smart-log"), SmartLogMoves, differences);
        AssertSame("error-log", k["error-log"], Ours("error-log"), ErrorLogMoves, differences);
        AssertSame("nvm-id-ctrl", k["nvm-id-ctrl"], Ours("nvm-id-ctrl"), null, differences);
        var ourIocs = Ours("id-iocs").GetProperty("iocs").EnumerateArray()
            .Select(e => (e.GetProperty("index").GetInt32(), e.GetProperty("vector").GetUInt64())).ToList();
        if (!ourIocs.SequenceEqual(kernelIocs)) { differences.Add($"id-iocs: nvme-cli {string.Join(", ", kernelIocs)}, vfio {string.Join(", ", ourIocs)}"); }
        // nvme-cli keys the firmware log by its device name (nvme1), vfio by the BDF: the slots inside must agree.
        var ourFw = Ours("fw-log");
        AssertSame("fw-log", k["fw-log"].EnumerateObject().Single().Value, ourFw.GetProperty(Bdf), null, differences);
        foreach (int fid in fids)
        {
            if (FeatureMoves.ContainsKey(fid)) { continue; }
            uint ours = Ours("get-feature", "-f", fid.ToString(CultureInfo.InvariantCulture)).GetProperty("value").GetUInt32();
            if (ours != kernelFeatures[fid]) { differences.Add($"get-feature 0x{fid:x2}: nvme-cli 0x{kernelFeatures[fid]:x8}, vfio 0x{ours:x8}"); }
        }
        Assert.True(differences.Count == 0, "vfio nvme and nvme-cli differ:\n  " + string.Join("\n  ", differences));
        Lab.Report($"{Bdf}: id-ctrl, id-ns, ns-descs, nvm-id-ctrl, id-iocs, smart-log, error-log, fw-log and {fids.Length - FeatureMoves.Count} features equal " +
            $"(exceptions: {SmartLogMoves.Count} SMART counters, {ErrorLogMoves.Count} error-log field, {FeatureMoves.Count} features)");
    }

    [Fact]
    public void AFormatByVfioIsWhatTheKernelSeesAfterRebinding()
    {
        ToVfio();
        // QEMU's LBA format 4 is 4096-byte blocks without metadata (id-ns lbafs[4]: ms 0, ds 12).
        var f = Ours("format", "--nsid", "1", "--lbaf", "4", "--force");
        Assert.Equal(4096, f.GetProperty("block_size").GetInt32());
        try
        {
            ToKernel();
            var ns = KernelNamespaces().Single(d => d.GetProperty("NameSpace").GetUInt32() == 1);
            Assert.Equal(4096, ns.GetProperty("SectorSize").GetInt32());
            Assert.Equal((16UL << 20) / 4096, ns.GetProperty("MaximumLBA").GetUInt64());
            // vfio nvme list reads the same from sysfs while the kernel has the controller.
            var listed = VfioCli.Json("nvme", "list").GetProperty("Devices").EnumerateArray().Single(d => d.GetProperty("Address").GetString() == Bdf);
            Assert.Equal(4096, listed.GetProperty("SectorSize").GetInt32());
            Assert.Equal("nvme", listed.GetProperty("Driver").GetString());
        }
        finally
        {
            ToVfio();
            Assert.Equal(512, Ours("format", "--nsid", "1", "--lbaf", "0", "--force").GetProperty("block_size").GetInt32());
        }
        ToKernel();
        Assert.Equal(512, KernelNamespaces().Single(d => d.GetProperty("NameSpace").GetUInt32() == 1).GetProperty("SectorSize").GetInt32());
    }

    /// <summary>The namespaces <c>nvme list -o json</c> shows for this controller (by its serial).</summary>
    private static List<JsonElement> KernelNamespaces() =>
        [.. NvmeCli("list", "-o", "json").GetProperty("Devices").EnumerateArray().Where(d => d.GetProperty("SerialNumber").GetString()!.Trim() == "VFIOLAB0003")];

    [Fact]
    public void AttachAndDetachByVfioAreWhatTheKernelSeesAfterRebinding()
    {
        ToVfio();
        Assert.True(Ours("attach-ns", "--nsid", "2").GetProperty("attached").GetBoolean());
        try
        {
            ToKernel();
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (!KernelNamespaces().Any(d => d.GetProperty("NameSpace").GetUInt32() == 2))
            {
                Assert.True(DateTime.UtcNow < deadline, "the kernel does not list namespace 2 after vfio nvme attach-ns");
                Thread.Sleep(200);
            }
        }
        finally
        {
            ToVfio();
            Assert.True(Ours("detach-ns", "--nsid", "2").GetProperty("detached").GetBoolean());
        }
        ToKernel();
        Assert.DoesNotContain(KernelNamespaces(), d => d.GetProperty("NameSpace").GetUInt32() == 2);
        ToVfio();
        Assert.Equal([1u], Ours("list-ns").GetProperty("nsid_list").EnumerateArray().Select(e => e.GetProperty("nsid").GetUInt32()));
    }

    [Fact]
    public void CreateNsOnQemu72IsOneClearLineAndTheControllerGoesOn()
    {
        // QEMU 7.2 and 10.0.2 set OACS bit 3 (they implement Namespace Attachment) but answer Namespace Management (0Dh) with
        // Invalid Command Opcode: what a user of such a QEMU gets must say so, and nothing may break.
        ToVfio();
        var (code, stderr) = OursFails("create-ns", "--nsze", "1024");
        Assert.Equal(2, code);
        Assert.Contains("Invalid Command Opcode", stderr, StringComparison.Ordinal);
        Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal("VFIOLAB0003", Ours("id-ctrl").GetProperty("sn").GetString()!.Trim());
    }

    [Fact]
    public void BadInputIsOneLineWithExitCodeTwoAndTheControllerStillAnswers()
    {
        ToVfio();
        string[][] bad =
        [
            ["get-log", "--log-id", "0x55", "--log-len", "512"],   // a log page QEMU does not have
            ["get-feature", "-f", "0x7e"],                           // a feature QEMU answers Invalid Field to
            ["id-ns", "--nsid", "0"],
            ["id-ns", "--nsid", "300"],                              // NN is 256
            ["format", "--nsid", "1", "--lbaf", "9", "--force"],    // QEMU lists 8 formats (NLBAF 7)
        ];
        foreach (var args in bad)
        {
            var (code, stderr) = OursFails(args);
            Assert.True(code == 2, $"vfio nvme {string.Join(' ', args)}: exit {code}: {stderr}");
            var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.True(lines.Length == 1 && lines[0].StartsWith("vfio: ", StringComparison.Ordinal), $"vfio nvme {string.Join(' ', args)}: {stderr}");
            Assert.Equal("VFIOLAB0003", Ours("id-ctrl").GetProperty("sn").GetString()!.Trim());
        }
    }

    [Fact]
    public async Task ASmartCriticalWarningSetThroughQmpArrivesAsAnAsyncEvent()
    {
        ToVfio();
        using var dev = VfioDevice.Open(PciAddress.Parse(Bdf), new VfioOpenOptions { AllowNoIommu = true });
        using var controller = NvmeController.Open(dev);
        var raised = new TaskCompletionSource<NvmeAsyncEvent>(TaskCreationOptions.RunContinuationsAsynchronously);
        controller.AsyncEvent += (_, e) => raised.TrySetResult(e);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        cts.CancelAfter(TimeSpan.FromSeconds(60));
        var stream = controller.ReadAsyncEvents(cts.Token).GetAsyncEnumerator(cts.Token);
        try
        {
            // Bit 0 of the critical warning: available spare below its threshold (NVMe 1.4 Figure 194).
            Lab.Qmp("qom-set", new JsonObject { ["path"] = "/machine/peripheral/nvme3", ["property"] = "smart_critical_warning", ["value"] = 1 });
            Assert.True(await stream.MoveNextAsync());
            var e = stream.Current;
            Assert.Equal(AsyncEventType.SmartHealth, e.Type);
            Assert.Equal((byte)LogPageId.SmartHealth, e.LogPageId);
            Assert.NotNull(e.SmartLog);
            Assert.True(e.SmartLog!.CriticalWarning.HasFlag(CriticalWarnings.AvailableSpareLow), $"critical warning {e.SmartLog.CriticalWarning}");
            var viaEvent = await raised.Task.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
            Assert.Equal(e.Dw0, viaEvent.Dw0);
            Lab.Report($"{Bdf}: QMP smart_critical_warning=1 arrived as AER dw0 0x{e.Dw0:x8}");
        }
        finally
        {
            Lab.Qmp("qom-set", new JsonObject { ["path"] = "/machine/peripheral/nvme3", ["property"] = "smart_critical_warning", ["value"] = 0 });
            await stream.DisposeAsync();
        }
    }
}
