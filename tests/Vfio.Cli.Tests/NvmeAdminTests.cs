using System.Globalization;
using System.Text.Json;
using Vfio.Emulation.Nvme;
using Vfio.Kernel;
using Vfio.Nvme.Tests.Emulation;
using Vfio.Spec.Nvme;
using Vfio.Tests.Host;

namespace Vfio.Cli.Tests;

/// <summary>
/// The nvme-cli style management commands of <c>vfio nvme</c> (id-ctrl, id-ns, ns-descs, list-ns, smart-log, error-log,
/// fw-log, effects-log, get-log, get-feature, set-feature, format, create-ns, delete-ns, attach-ns, detach-ns), run in
/// process against the emulated NVMe model: their --json documents next to what nvme-cli 2.3 printed for QEMU's nvme
/// (NvmeCli/*.json), their values next to what the model holds, and the one-line errors a bad request gets.
/// </summary>
// One at a time: every emulated controller is 0000:00:06.0, and perf reads its totals from the driver's meter by
// that address, so another class's I/O on the same address beside a perf run would be counted in it.
[Collection("nvme")]
public sealed class NvmeAdminTests : IDisposable
{
    private const string Bdf = "0000:00:06.0";
    private const ulong MiB = 1UL << 20;
    private readonly FakeSysfs _fs = new();
    private readonly List<EmulatedNvme> _models = [];
    private readonly string _dir = Directory.CreateTempSubdirectory("vfio-nvme-admin-").FullName;

    public void Dispose()
    {
        foreach (var m in _models) { m.Dispose(); }
        _fs.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    /// <summary>A model and a runner whose every command opens it (each run brings the controller up and down again).</summary>
    private (EmulatedNvme Nvme, Func<string[], CliResult> Run) Model(NvmeDeviceOptions? options = null)
    {
        var nvme = new EmulatedNvme(options: options);
        _models.Add(nvme);
        var cli = new CliRunner(_fs)
        {
            OpenDevice = (address, _) =>
            {
                Assert.Equal(PciAddress.Parse(Bdf), address);
                return nvme;
            },
        };
        return (nvme, args =>
        {
            var r = cli.Run(args).AssertNoStackTrace();
            // Every DMA buffer, queue and the controller itself were released, whatever the outcome.
            Assert.Equal(0, nvme.Allocator!.LiveBuffers);
            return r;
        });
    }

    private static CliResult Ok(CliResult r)
    {
        Assert.True(r.ExitCode == ExitCodes.Ok, $"exit {r.ExitCode}\nstdout: {r.Out}\nstderr: {r.Err}");
        return r;
    }

    private static JsonElement OkJson(CliResult r) => Json.Parse(Ok(r).Out);

    /// <summary>
    /// A refusal: the exit code, and stderr is exactly one "vfio: ..." line (no log noise, no trace), which is returned.
    /// A command line the parser rejects (exit 1) is followed by the parser's pointer to --help, as every vfio command's is.
    /// </summary>
    private static string Refused(CliResult r, int exitCode)
    {
        Assert.True(r.ExitCode == exitCode, $"exit {r.ExitCode}, expected {exitCode}\nstdout: {r.Out}\nstderr: {r.Err}");
        var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Where(l => !(exitCode == ExitCodes.Usage && l.StartsWith("Run 'vfio ", StringComparison.Ordinal) && l.EndsWith("--help' for usage.", StringComparison.Ordinal)))
            .ToList();
        Assert.True(lines.Count == 1, $"expected one line on stderr, got {lines.Count}:\n{r.Err}");
        Assert.StartsWith("vfio: ", lines[0], StringComparison.Ordinal);
        return lines[0];
    }

    private static JsonElement Fixture(string name) =>
        Json.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "NvmeCli", name + ".json")));

    private static string[] Args(string command, params string[] rest) => ["nvme", command, Bdf, .. rest];

    // ------------------------------------------------------------------------------------------------ nvme-cli 2.3 field names

    /// <summary>Name → JSON kind of each member, in document order.</summary>
    private static List<(string Name, JsonValueKind Kind)> Members(JsonElement o) =>
        [.. o.EnumerateObject().Select(p => (p.Name, Kind(p.Value.ValueKind)))];

    // True and False are one kind to a script ("a boolean"); nvme-cli 2.3 prints none in these documents anyway.
    private static JsonValueKind Kind(JsonValueKind k) => k == JsonValueKind.False ? JsonValueKind.True : k;

    /// <summary>
    /// Same member names as nvme-cli's document, each of the same JSON kind, except the names in
    /// <paramref name="onlyOurs"/> and <paramref name="onlyTheirs"/> (each with its reason at the call); with
    /// <paramref name="ordered"/>, the common members come in the same order.
    /// </summary>
    private static void AssertSameMembers(string what, JsonElement theirs, JsonElement ours, bool ordered,
        string[]? onlyOurs = null, string[]? onlyTheirs = null)
    {
        var t = Members(theirs);
        var o = Members(ours);
        var tNames = t.Select(m => m.Name).ToHashSet(StringComparer.Ordinal);
        var oNames = o.Select(m => m.Name).ToHashSet(StringComparer.Ordinal);
        var missing = tNames.Except(oNames).Except(onlyTheirs ?? []).ToList();
        var extra = oNames.Except(tNames).Except(onlyOurs ?? []).ToList();
        Assert.True(missing.Count == 0 && extra.Count == 0,
            $"{what}: nvme-cli 2.3 has, vfio lacks: [{string.Join(", ", missing)}]; vfio has, nvme-cli 2.3 lacks: [{string.Join(", ", extra)}]");
        // The listed exceptions must still be true, or the list is stale.
        foreach (var name in onlyOurs ?? []) { Assert.True(oNames.Contains(name) && !tNames.Contains(name), $"{what}: '{name}' is no longer vfio's only"); }
        foreach (var name in onlyTheirs ?? []) { Assert.True(tNames.Contains(name) && !oNames.Contains(name), $"{what}: '{name}' is no longer nvme-cli's only"); }
        var kinds = o.ToDictionary(m => m.Name, m => m.Kind, StringComparer.Ordinal);
        var wrongKinds = t.Where(m => kinds.TryGetValue(m.Name, out var k) && k != m.Kind)
            .Select(m => $"{m.Name} ({m.Kind} in nvme-cli, {kinds[m.Name]} in vfio)").ToList();
        Assert.True(wrongKinds.Count == 0, $"{what}: other JSON kinds: {string.Join(", ", wrongKinds)}");
        if (ordered)
        {
            var common = t.Select(m => m.Name).Where(oNames.Contains).ToList();
            var ourOrder = o.Select(m => m.Name).Where(tNames.Contains).ToList();
            Assert.True(common.SequenceEqual(ourOrder, StringComparer.Ordinal),
                $"{what}: members in another order than nvme-cli 2.3's; first difference at '{FirstDifference(common, ourOrder)}'\n" +
                $"nvme-cli: {string.Join(",", common)}\nvfio:     {string.Join(",", ourOrder)}");
        }
    }

    private static string FirstDifference(List<string> a, List<string> b)
    {
        for (int i = 0; i < Math.Min(a.Count, b.Count); i++) { if (a[i] != b[i]) { return $"{a[i]} (nvme-cli) / {b[i]} (vfio), position {i}"; } }
        return "the end";
    }

    [Fact]
    public void Id_ctrl_json_has_nvme_clis_fields_kinds_and_order()
    {
        var (_, run) = Model();
        var ours = OkJson(run(Args("id-ctrl", "--json")));
        var theirs = Fixture("id-ctrl");
        // subnqn: nvme-cli leaves it out when the controller reports none; QEMU reports one, the model does not.
        AssertSameMembers("id-ctrl", theirs, ours, ordered: true, onlyTheirs: ["subnqn"]);
        AssertSameMembers("id-ctrl psds[0]", theirs.GetProperty("psds")[0], ours.GetProperty("psds")[0], ordered: true);
        Assert.Equal(1, ours.GetProperty("psds").GetArrayLength());   // NPSS 0: one power state, as QEMU's
    }

    [Fact]
    public void Id_ns_json_has_nvme_clis_fields_kinds_and_order()
    {
        var (_, run) = Model();
        var ours = OkJson(run(Args("id-ns", "--json")));
        var theirs = Fixture("id-ns");
        // npwg, npwa, npdg, npda, nows: nvme-cli prints them only when NSFEAT bit 4 (OPTPERF) is set, as QEMU's is
        // (nsfeat 20); the model's is clear, so vfio leaves them out as nvme-cli would.
        Assert.Equal(0x10, theirs.GetProperty("nsfeat").GetInt32() & 0x10);
        Assert.Equal(0, ours.GetProperty("nsfeat").GetInt32() & 0x10);
        AssertSameMembers("id-ns", theirs, ours, ordered: true, onlyTheirs: ["npwg", "npwa", "npdg", "npda", "nows"]);
        AssertSameMembers("id-ns lbafs[0]", theirs.GetProperty("lbafs")[0], ours.GetProperty("lbafs")[0], ordered: true);
    }

    [Fact]
    public void Smart_log_json_has_nvme_clis_fields_kinds_and_order()
    {
        var (_, run) = Model();
        var ours = OkJson(run(Args("smart-log", "--json")));
        // temperature_sensor_N: both print a sensor only when it reads non-zero; QEMU has none, the model reports
        // sensor 1 (the composite temperature again).
        AssertSameMembers("smart-log", Fixture("smart-log"), ours, ordered: true, onlyOurs: ["temperature_sensor_1"]);
    }

    [Fact]
    public void Error_log_entry_has_nvme_clis_fields_and_kinds()
    {
        var (_, run) = Model();
        // A failed read first, so that entry 0 is a real one: on a fresh controller every entry is empty (error count 0,
        // like the fixture's one), and such entries tell nothing about the fields.
        Refused(run(Args("read", "--lba", "8192")), ExitCodes.DeviceOrHost);
        var ours = OkJson(run(Args("error-log", "--json")));
        var theirs = Fixture("error-log");
        AssertSameMembers("error-log", theirs, ours, ordered: true);
        // nvme-cli 2.3 does not print csi, opcode and log_page_version (NVMe 1.4/2.0 fields), so neither does vfio: the
        // lab test compares documents read both ways member for member.
        AssertSameMembers("error-log errors[0]", theirs.GetProperty("errors")[0], ours.GetProperty("errors")[0], ordered: true);
    }

    [Fact]
    public void Ns_descs_list_ns_and_fw_log_have_nvme_clis_fields_and_kinds()
    {
        var (_, run) = Model();

        var descs = OkJson(run(Args("ns-descs", "--json")));
        var theirs = Fixture("ns-descs");
        AssertSameMembers("ns-descs", theirs, descs, ordered: true);
        // QEMU reported only the command set identifier; the model reports all four types. Each entry has nvme-cli's
        // loc, nidt, nidl, type and a member named after the type; csi is a string there, as in nvme-cli.
        var entries = descs.GetProperty("ns-descs").EnumerateArray().ToList();
        Assert.Equal(["eui64", "nguid", "uuid", "csi"], entries.Select(e => e.GetProperty("type").GetString()));
        var template = theirs.GetProperty("ns-descs")[0];
        foreach (var e in entries)
        {
            string type = e.GetProperty("type").GetString()!;
            Assert.Equal(["loc", "nidt", "nidl", "type", type], e.EnumerateObject().Select(p => p.Name));
            foreach (var name in new[] { "loc", "nidt", "nidl", "type" })
            {
                Assert.Equal(template.GetProperty(name).ValueKind, e.GetProperty(name).ValueKind);
            }
            Assert.Equal(JsonValueKind.String, e.GetProperty(type).ValueKind);
        }
        Assert.Equal("0", entries[3].GetProperty("csi").GetString());
        // loc is the offset of the descriptor in the Identify data: 4-byte headers and 8, 16, 16, 1 bytes of value.
        Assert.Equal([0, 12, 32, 52], entries.Select(e => e.GetProperty("loc").GetInt32()));
        Assert.Equal([1, 2, 3, 4], entries.Select(e => e.GetProperty("nidt").GetInt32()));
        Assert.Equal([8, 16, 16, 1], entries.Select(e => e.GetProperty("nidl").GetInt32()));

        var list = OkJson(run(Args("list-ns", "--json")));
        AssertSameMembers("list-ns", Fixture("list-ns"), list, ordered: true);
        AssertSameMembers("list-ns nsid_list[0]", Fixture("list-ns").GetProperty("nsid_list")[0], list.GetProperty("nsid_list")[0], ordered: true);

        // nvme-cli keys the document by the device name (nvme0); vfio by the BDF it was given.
        var fw = OkJson(run(Args("fw-log", "--json")));
        var inner = Assert.Single(fw.EnumerateObject());
        Assert.Equal(Bdf, inner.Name);
        var theirFw = Assert.Single(Fixture("fw-log").EnumerateObject());
        AssertSameMembers("fw-log", theirFw.Value, inner.Value, ordered: true);
    }

    // ------------------------------------------------------------------------------------------------ values

    [Fact]
    public void Id_ctrl_values_are_the_models()
    {
        var (_, run) = Model(new NvmeDeviceOptions { MaxNamespaces = 4, TotalCapacityBytes = 16 * MiB });
        var d = OkJson(run(Args("id-ctrl", "--json")));
        // nvme-cli keeps the space padding of the fixed-width fields; so does vfio.
        Assert.Equal("EMU-0001".PadRight(20), d.GetProperty("sn").GetString());
        Assert.Equal("Emulated NVMe Ctrl".PadRight(40), d.GetProperty("mn").GetString());
        Assert.Equal("1.0".PadRight(8), d.GetProperty("fr").GetString());
        Assert.Equal(0x1b36, d.GetProperty("vid").GetInt32());
        Assert.Equal(4, d.GetProperty("nn").GetInt32());
        Assert.Equal(0x0008, d.GetProperty("oacs").GetInt32() & 0x0008);   // Namespace Management: more than one NSID
        Assert.Equal((16 * MiB).ToString(CultureInfo.InvariantCulture), d.GetProperty("tnvmcap").GetString());
        Assert.Equal((12 * MiB).ToString(CultureInfo.InvariantCulture), d.GetProperty("unvmcap").GetString());

        var (_, single) = Model();
        var one = OkJson(single(Args("id-ctrl", "--json")));
        Assert.Equal(1, one.GetProperty("nn").GetInt32());
        Assert.Equal(0, one.GetProperty("oacs").GetInt32() & 0x0008);      // one NSID: nothing to manage
        Assert.Equal(0x0002, one.GetProperty("oacs").GetInt32() & 0x0002); // Format NVM either way

        var text = Ok(single(Args("id-ctrl")));
        Assert.Contains("NVME Identify Controller (" + Bdf + "):", text.Out, StringComparison.Ordinal);
        Assert.Matches(@"(?m)^sn\s+: EMU-0001", text.Out);
    }

    [Fact]
    public void Id_ns_values_for_a_4096_byte_block_namespace()
    {
        var (_, run) = Model(new NvmeDeviceOptions { BlockSize = 4096, BlockCount = 1024 });
        var d = OkJson(run(Args("id-ns", "--json")));
        Assert.Equal(1024UL, d.GetProperty("nsze").GetUInt64());
        Assert.Equal(1024UL, d.GetProperty("ncap").GetUInt64());
        Assert.Equal(1, d.GetProperty("flbas").GetInt32());                 // format 1 in use
        Assert.Equal(1, d.GetProperty("nlbaf").GetInt32());                 // 0's based: two formats
        var lbafs = d.GetProperty("lbafs").EnumerateArray().ToList();
        Assert.Equal([9, 12], lbafs.Select(f => f.GetProperty("ds").GetInt32()));
        Assert.All(lbafs, f => Assert.Equal(0, f.GetProperty("ms").GetInt32()));
        Assert.Equal((4 * MiB).ToString(CultureInfo.InvariantCulture), d.GetProperty("nvmcap").GetString());

        var text = Ok(run(Args("id-ns")));
        Assert.Contains("lbaf  1 : ms:0   lbads:12 rp:0 (in use)", text.Out, StringComparison.Ordinal);
        Assert.DoesNotContain("lbads:9  rp:0 (in use)", text.Out, StringComparison.Ordinal);
    }

    [Fact]
    public void Smart_log_counters_move_with_io_and_show_the_critical_warning()
    {
        var (nvme, run) = Model();
        var before = OkJson(run(Args("smart-log", "--json")));
        Assert.Equal("0", before.GetProperty("data_units_written").GetString());
        Assert.Equal("0", before.GetProperty("host_write_commands").GetString());
        Assert.Equal("0", before.GetProperty("data_units_read").GetString());
        Assert.Equal("0", before.GetProperty("host_read_commands").GetString());
        Assert.Equal(0, before.GetProperty("critical_warning").GetInt32());

        Ok(run(Args("write", "--lba", "0", "--count", "8", "--pattern", "0x5a")));
        // 256 blocks of 512 B (128 KiB, MDTS) are one Read each: four of them are 1024 units of 512 bytes.
        for (int i = 0; i < 4; i++) { Ok(run(Args("read", "--lba", "0", "--count", "256"))); }
        nvme.Model.SmartCriticalWarning = 0x04;   // NVM subsystem reliability degraded

        var after = OkJson(run(Args("smart-log", "--json")));
        // Data units are thousands of 512-byte units, rounded up (NVMe §5.16.1.3): 8 → 1, 1024 → 2 (1 if truncated).
        Assert.Equal("1", after.GetProperty("data_units_written").GetString());
        Assert.Equal("1", after.GetProperty("host_write_commands").GetString());
        Assert.Equal("2", after.GetProperty("data_units_read").GetString());
        Assert.Equal("4", after.GetProperty("host_read_commands").GetString());
        Assert.Equal(4, after.GetProperty("critical_warning").GetInt32());
        Assert.Equal(310, after.GetProperty("temperature").GetInt32());

        var text = Ok(run(Args("smart-log")));
        Assert.Matches(@"(?m)^temperature\s+: 37°C \(310 Kelvin\)", text.Out);
        Assert.Matches(@"(?m)^critical_warning\s+: 4\s*$", text.Out);
    }

    [Fact]
    public void Error_log_describes_a_failed_read()
    {
        var (_, run) = Model();
        Refused(run(Args("read", "--lba", "8192")), ExitCodes.DeviceOrHost);
        var d = OkJson(run(Args("error-log", "--json", "--log-entries", "4")));
        // Newest first: the failed read, then (nvme-cli prints every slot the controller keeps) only empty slots.
        var errors = d.GetProperty("errors").EnumerateArray().ToList();
        Assert.InRange(errors.Count, 1, 4);
        Assert.All(errors.Skip(1), empty => Assert.Equal(0UL, empty.GetProperty("error_count").GetUInt64()));
        var e = errors[0];
        Assert.True(e.GetProperty("error_count").GetUInt64() >= 1);
        Assert.Equal(1, e.GetProperty("sqid").GetInt32());                  // an I/O queue, not the admin queue
        int status = e.GetProperty("status_field").GetInt32();
        Assert.Equal(0x80, status & 0xFF);                                  // SC: LBA Out of Range
        Assert.Equal(0, (status >> 8) & 7);                                 // SCT: generic
        Assert.Equal(8192UL, e.GetProperty("lba").GetUInt64());
        Assert.Equal(1u, e.GetProperty("nsid").GetUInt32());
        Assert.False(e.TryGetProperty("opcode", out _));                  // not a field nvme-cli 2.3 prints

        var smart = OkJson(run(Args("smart-log", "--json")));
        Assert.Equal(e.GetProperty("error_count").GetUInt64().ToString(CultureInfo.InvariantCulture),
            smart.GetProperty("num_err_log_entries").GetString());
    }

    [Fact]
    public void Fw_log_shows_slot_1_as_nvme_cli_23_does()
    {
        var (_, run) = Model();
        var inner = OkJson(run(Args("fw-log", "--json"))).GetProperty(Bdf);
        Assert.Equal(1, inner.GetProperty("Active Firmware Slot (afi)").GetInt32());
        // The fixture's own value: QEMU's FR is "1.0" padded with spaces, as the model's is.
        Assert.Equal("2314885530819505713 (1.0.....)", inner.GetProperty("Firmware Rev Slot 1").GetString());
        Assert.Equal(Fixture("fw-log").GetProperty("nvme0").GetProperty("Firmware Rev Slot 1").GetString(),
            inner.GetProperty("Firmware Rev Slot 1").GetString());
        Assert.False(inner.TryGetProperty("Firmware Rev Slot 2", out _));
    }

    [Fact]
    public void Effects_log_lists_identify_and_write()
    {
        var (_, run) = Model();
        var d = OkJson(run(Args("effects-log", "--json")));
        var identify = Assert.Single(d.GetProperty("admin_cmd_set").EnumerateArray(), e => e.GetProperty("opcode").GetInt32() == 6);
        Assert.Equal(1, identify.GetProperty("csupp").GetInt32());
        Assert.Equal(0, identify.GetProperty("lbcc").GetInt32());
        var write = Assert.Single(d.GetProperty("io_cmd_set").EnumerateArray(), e => e.GetProperty("opcode").GetInt32() == 1);
        Assert.Equal(1, write.GetProperty("lbcc").GetInt32());
        Assert.Equal(3u, write.GetProperty("effects").GetUInt32());          // CSUPP | LBCC
        var read = Assert.Single(d.GetProperty("io_cmd_set").EnumerateArray(), e => e.GetProperty("opcode").GetInt32() == 2);
        Assert.Equal(0, read.GetProperty("lbcc").GetInt32());

        var text = Ok(run(Args("effects-log")));
        Assert.Contains("0x06", text.Out, StringComparison.Ordinal);
    }

    [Fact]
    public void Get_log_returns_the_smart_page_that_smart_log_decodes()
    {
        var (nvme, run) = Model();
        nvme.Model.CompositeTemperatureKelvin = 0x0150;   // 336 K: both bytes differ from each other and from 0
        nvme.Model.SmartCriticalWarning = 0x04;
        var smart = OkJson(run(Args("smart-log", "--json")));
        var log = OkJson(run(Args("get-log", "-i", "2", "-l", "512", "--json")));
        Assert.Equal(2, log.GetProperty("log_id").GetInt32());
        Assert.Equal(512, log.GetProperty("length").GetInt32());
        var bytes = Convert.FromHexString(log.GetProperty("hex").GetString()!);
        Assert.Equal(512, bytes.Length);
        Assert.Equal(smart.GetProperty("critical_warning").GetInt32(), bytes[0]);
        Assert.Equal(smart.GetProperty("temperature").GetInt32(), bytes[1] | bytes[2] << 8);
        Assert.Equal(336, bytes[1] | bytes[2] << 8);
        Assert.Equal(smart.GetProperty("avail_spare").GetInt32(), bytes[3]);

        string path = Path.Combine(_dir, "smart.bin");
        var saved = OkJson(run(Args("get-log", "-i", "2", "-l", "512", "--out", path, "--json")));
        Assert.Equal(path, saved.GetProperty("out").GetString());
        var file = File.ReadAllBytes(path);
        Assert.Equal(512, file.Length);
        Assert.Equal(bytes[..64], file[..64]);

        var dump = Ok(run(Args("get-log", "-i", "2", "-l", "512")));
        Assert.Contains("log-id:2", dump.Out, StringComparison.Ordinal);
        // Critical warning 04h, temperature 0150h little-endian, available spare 100 %, threshold 10 %.
        Assert.Contains("00000000  04 50 01 64 0a ", dump.Out, StringComparison.Ordinal);

        // -b writes the bytes themselves to the binary standard output the host gives (the runner captures it).
        var raw = Ok(run(Args("get-log", "-i", "2", "-l", "512", "-b")));
        Assert.Equal(file, raw.Binary);
        Assert.Equal("", raw.Out);
        var both = run(Args("get-log", "-i", "2", "-l", "512", "-b", "--out", path));
        Assert.Contains("cannot be used together", Refused(both, ExitCodes.Usage), StringComparison.Ordinal);
        var odd = run(Args("get-log", "-i", "2", "-l", "510"));
        Assert.Contains("multiple of 4", Refused(odd, ExitCodes.Usage), StringComparison.Ordinal);
    }

    // ------------------------------------------------------------------------------------------------ features

    private static NvmeDeviceOptions SavedFeatures => new()
    {
        Oncs = OptionalNvmCommands.WriteZeroes | OptionalNvmCommands.DatasetManagement | OptionalNvmCommands.SaveAndSelect,
    };

    [Fact]
    public void Get_feature_shows_the_value_decoded_and_the_capabilities()
    {
        var (_, run) = Model(SavedFeatures);
        var current = Ok(run(Args("get-feature", "-f", "6"))).Out;
        Assert.Contains("get-feature:0x06 (Volatile Write Cache), Current value:0x00000001", current, StringComparison.Ordinal);
        Assert.Contains("\tVolatile Write Cache Enable (WCE): Enabled", current, StringComparison.Ordinal);

        var caps = Ok(run(Args("get-feature", "-f", "6", "-s", "3"))).Out;
        Assert.Contains("Supported capabilities value:0x00000005", caps, StringComparison.Ordinal);   // saveable, changeable
        Assert.Contains("\tSaveable: Yes", caps, StringComparison.Ordinal);
        Assert.Contains("\tNamespace specific: No", caps, StringComparison.Ordinal);
        Assert.Contains("\tChangeable: Yes", caps, StringComparison.Ordinal);

        var d = OkJson(run(Args("get-feature", "-f", "0x06", "--sel", "default", "--json")));
        Assert.Equal(6, d.GetProperty("feature_id").GetInt32());
        Assert.Equal("Volatile Write Cache", d.GetProperty("name").GetString());
        Assert.Equal("default", d.GetProperty("sel").GetString());
        Assert.Equal(1u, d.GetProperty("value").GetUInt32());
        var field = Assert.Single(d.GetProperty("fields").EnumerateArray());
        Assert.Equal("Volatile Write Cache Enable (WCE)", field.GetProperty("name").GetString());
        Assert.Equal("Enabled", field.GetProperty("value").GetString());
    }

    [Fact]
    public void A_saved_feature_survives_the_next_run()
    {
        var (_, run) = Model(SavedFeatures);
        var set = OkJson(run(Args("set-feature", "-f", "4", "--value", "0x160", "--save", "--json")));
        Assert.True(set.GetProperty("save").GetBoolean());
        Assert.Equal(0x160u, set.GetProperty("value").GetUInt32());

        var saved = Ok(run(Args("get-feature", "-f", "4", "-s", "2"))).Out;
        Assert.Contains("Saved value:0x00000160", saved, StringComparison.Ordinal);
        // Every run opens the controller afresh, which resets it (CC.EN 1 → 0 → 1), and a reset loads the saved value
        // as the current one (NVMe §5.21.1): so the current value seen by a new run is the saved 0x160, not the default.
        var current = OkJson(run(Args("get-feature", "-f", "4", "--json")));
        Assert.Equal(0x160u, current.GetProperty("value").GetUInt32() & 0xFFFF);
        var deflt = OkJson(run(Args("get-feature", "-f", "4", "-s", "1", "--json")));
        Assert.Equal((uint)NvmeDevice.DefaultOverTemperatureThreshold, deflt.GetProperty("value").GetUInt32() & 0xFFFF);

        // Without --save the value holds only until the controller is reset, i.e. until this run ends.
        Ok(run(Args("set-feature", "-f", "4", "--value", "0x170")));
        var again = OkJson(run(Args("get-feature", "-f", "4", "--json")));
        Assert.Equal(0x160u, again.GetProperty("value").GetUInt32() & 0xFFFF);
    }

    [Fact]
    public void Number_of_queues_is_not_the_users_to_set()
    {
        var (_, run) = Model(SavedFeatures);
        string line = Refused(run(Args("set-feature", "-f", "7", "--value", "0x00030003")), ExitCodes.DeviceOrHost);
        Assert.Contains("MaxIoQueues", line, StringComparison.Ordinal);
        Ok(run(Args("id-ctrl")));
    }

    [Fact]
    public void Bad_feature_requests_are_refused()
    {
        var (_, run) = Model(SavedFeatures);
        string line = Refused(run(Args("get-feature", "-f", "0x7e")), ExitCodes.DeviceOrHost);
        Assert.Contains("Invalid Field", line, StringComparison.Ordinal);
        Refused(run(Args("get-feature", "-f", "6", "--sel", "9")), ExitCodes.Usage);
        Refused(run(Args("get-feature", "-f", "0x100")), ExitCodes.Usage);
        Refused(run(Args("get-feature")), ExitCodes.Usage);                 // -f is required
        Refused(run(Args("set-feature", "-f", "6")), ExitCodes.Usage);      // --value is required
    }

    // ------------------------------------------------------------------------------------------------ namespaces

    private static NvmeDeviceOptions Managed => new() { MaxNamespaces = 4, TotalCapacityBytes = 16 * MiB };   // namespace 1: 8192 × 512 B

    private static List<uint> Nsids(JsonElement list) => [.. list.GetProperty("nsid_list").EnumerateArray().Select(e => e.GetProperty("nsid").GetUInt32())];

    [Fact]
    public void Namespaces_are_created_attached_formatted_detached_and_deleted()
    {
        var (nvme, run) = Model(Managed);

        var created = Ok(run(Args("create-ns", "--nsze", "2048")));
        Assert.Contains("create-ns: Success, created nsid:2", created.Out, StringComparison.Ordinal);
        Assert.Equal([1u], Nsids(OkJson(run(Args("list-ns", "--json")))));               // not attached yet
        Assert.Equal([1u, 2u], Nsids(OkJson(run(Args("list-ns", "-a", "--json")))));     // but allocated
        Assert.False(nvme.Model.IsNamespaceAttached(2));

        Ok(run(Args("attach-ns", "--nsid", "2")));
        Assert.Equal([1u, 2u], Nsids(OkJson(run(Args("list-ns", "--json")))));
        var ns2 = OkJson(run(Args("id-ns", "--nsid", "2", "--json")));
        Assert.Equal(2048UL, ns2.GetProperty("nsze").GetUInt64());
        Assert.Equal(0, ns2.GetProperty("flbas").GetInt32());

        // No --force: a usage error before anything is sent; the namespace keeps its format.
        string noForce = Refused(run(Args("format", "--nsid", "2", "--lbaf", "1")), ExitCodes.Usage);
        Assert.Contains("--force", noForce, StringComparison.Ordinal);
        Assert.Equal(512, nvme.Model.NamespaceBlockSize(2));

        var formatted = Ok(run(Args("format", "--nsid", "2", "--lbaf", "1", "--force")));
        Assert.Contains("Success formatting namespace:2 (256 blocks of 4096 B)", formatted.Out, StringComparison.Ordinal);
        Assert.Equal(4096, nvme.Model.NamespaceBlockSize(2));
        var after = OkJson(run(Args("id-ns", "--nsid", "2", "--json")));
        Assert.Equal(1, after.GetProperty("flbas").GetInt32() & 0xF);
        Assert.Equal(256UL, after.GetProperty("nsze").GetUInt64());
        Assert.Contains("lbaf  1 : ms:0   lbads:12 rp:0 (in use)", Ok(run(Args("id-ns", "--nsid", "2"))).Out, StringComparison.Ordinal);

        // An LBA format the namespace does not list: one line, and the namespace is as it was.
        string bad = Refused(run(Args("format", "--nsid", "2", "--lbaf", "5", "--force")), ExitCodes.DeviceOrHost);
        Assert.Contains("LBA formats 0..1", bad, StringComparison.Ordinal);
        Assert.Equal(4096, nvme.Model.NamespaceBlockSize(2));

        string noForceDelete = Refused(run(Args("delete-ns", "--nsid", "2")), ExitCodes.Usage);
        Assert.Contains("--force", noForceDelete, StringComparison.Ordinal);
        Assert.Equal([1u, 2u], nvme.Model.AllocatedNamespaceIds);

        Ok(run(Args("detach-ns", "--nsid", "2")));
        Assert.Equal([1u], Nsids(OkJson(run(Args("list-ns", "--json")))));
        Assert.Equal([1u, 2u], Nsids(OkJson(run(Args("list-ns", "--all", "--json")))));
        Ok(run(Args("delete-ns", "--nsid", "2", "--force")));
        Assert.Equal([1u], Nsids(OkJson(run(Args("list-ns", "--all", "--json")))));
        Assert.Equal([1u], nvme.Model.AllocatedNamespaceIds);
        var id = OkJson(run(Args("id-ctrl", "--json")));
        Assert.Equal((12 * MiB).ToString(CultureInfo.InvariantCulture), id.GetProperty("unvmcap").GetString());
    }

    [Fact]
    public void Create_ns_json_reports_the_new_namespace_and_the_capacity_left()
    {
        var (_, run) = Model(Managed);
        var d = OkJson(run(Args("create-ns", "--nsze", "2048", "--json")));
        Assert.Equal(2u, d.GetProperty("nsid").GetUInt32());
        Assert.Equal(2048UL, d.GetProperty("nsze").GetUInt64());
        Assert.Equal(2048UL, d.GetProperty("ncap").GetUInt64());
        Assert.Equal(11 * MiB, d.GetProperty("unvmcap").GetUInt64());
    }

    [Fact]
    public void Create_ns_beyond_the_capacity_is_refused_by_the_controller()
    {
        var (nvme, run) = Model(Managed);
        // 12 MiB are left: 24577 blocks of 512 B are one block too many.
        string line = Refused(run(Args("create-ns", "--nsze", "24577")), ExitCodes.DeviceOrHost);
        Assert.Contains("Namespace Insufficient Capacity", line, StringComparison.Ordinal);
        Assert.Equal([1u], nvme.Model.AllocatedNamespaceIds);
        Ok(run(Args("create-ns", "--nsze", "24576")));                       // exactly what is left
        Assert.Equal([1u, 2u], nvme.Model.AllocatedNamespaceIds);
    }

    [Fact]
    public void Create_ns_without_namespace_management_says_so()
    {
        var (nvme, run) = Model();
        string line = Refused(run(Args("create-ns", "--nsze", "16")), ExitCodes.DeviceOrHost);
        Assert.Contains("Namespace Management", line, StringComparison.Ordinal);
        Assert.Contains("not support", line, StringComparison.Ordinal);
        Assert.Equal([1u], nvme.Model.AllocatedNamespaceIds);
    }

    [Theory]
    [InlineData("format", "--lbaf", "1", "--force")]      // no --nsid: format needs it named
    [InlineData("delete-ns", "--force")]
    [InlineData("attach-ns")]
    [InlineData("detach-ns")]
    [InlineData("create-ns")]                             // --nsze is required
    [InlineData("create-ns", "--nsze", "x")]
    [InlineData("attach-ns", "--nsid", "2", "--controllers", "1,x")]
    public void Namespace_commands_without_what_they_need_are_usage_errors(params string[] args)
    {
        var (nvme, run) = Model(Managed);
        Refused(run(Args(args[0], args[1..])), ExitCodes.Usage);
        Assert.Equal([1u], nvme.Model.AllocatedNamespaceIds);
    }

    // ------------------------------------------------------------------------------------------------ bad input

    public static TheoryData<string[], string> BadRequests => new()
    {
        { ["get-log", "-i", "0x55", "-l", "512"], "Invalid Log Page" },
        { ["id-ns", "--nsid", "0"], "namespace 0 does not exist" },
        { ["id-ns", "--nsid", "99"], "namespace 99 does not exist" },
        { ["format", "--nsid", "1", "--lbaf", "3", "--force"], "LBA formats 0..1" },
        { ["get-feature", "-f", "0x7e"], "Invalid Field" },
    };

    [Theory]
    [MemberData(nameof(BadRequests))]
    public void A_bad_request_is_one_line_and_the_controller_stays_usable(string[] args, string message)
    {
        var (nvme, run) = Model(Managed);
        string line = Refused(run(Args(args[0], args[1..])), ExitCodes.DeviceOrHost);
        Assert.Contains(message, line, StringComparison.Ordinal);
        Assert.Contains(Bdf, line, StringComparison.Ordinal);
        Assert.Equal(512, nvme.Model.NamespaceBlockSize(1));
        var id = OkJson(run(Args("id-ctrl", "--json")));
        Assert.Equal(4, id.GetProperty("nn").GetInt32());
        Ok(run(Args("smart-log")));
    }

    // ------------------------------------------------------------------------------------------------ --socket

    [Fact]
    public async Task Smart_log_reaches_a_vfio_user_target_with_socket()
    {
        string socket = Path.Combine(_dir, "nvme.sock");
        var serve = Task.Run(() => new CliRunner(_fs).Run("serve", "nvme", "--socket", socket, "--once", "--namespaces", "2"),
            TestContext.Current.CancellationToken);
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!File.Exists(socket) && DateTime.UtcNow < deadline) { await Task.Delay(20, TestContext.Current.CancellationToken); }

        var r = new CliRunner(_fs).Run("nvme", "smart-log", "--socket", socket, "--json").AssertNoStackTrace();
        var d = OkJson(r);
        Assert.Equal(0, d.GetProperty("critical_warning").GetInt32());
        Assert.Equal(JsonValueKind.String, d.GetProperty("data_units_read").ValueKind);
        Assert.Equal("1", d.GetProperty("power_cycles").GetString());
        var served = await serve.WaitAsync(TimeSpan.FromSeconds(20), TestContext.Current.CancellationToken);
        Assert.True(served.ExitCode == 0, served.Out + served.Err);
    }

    // ------------------------------------------------------------------------------------------------ firmware

    [Fact]
    public void Fw_download_and_fw_commit_are_invalid_opcode_on_a_controller_without_them_and_it_goes_on()
    {
        // The model's default is QEMU 7.2's: no firmware commands at all.
        var (_, run) = Model();
        string image = Path.Combine(_dir, "fw.bin");
        File.WriteAllBytes(image, new byte[4096]);
        Assert.Contains("Invalid Command Opcode", Refused(run(Args("fw-download", "--fw", image)), ExitCodes.DeviceOrHost), StringComparison.Ordinal);
        Ok(run(Args("id-ctrl")));
    }

    [Fact]
    public void Fw_download_then_fw_commit_with_activation_at_reset_changes_the_revision()
    {
        var (nvme, run) = Model(new NvmeDeviceOptions { FirmwareSlots = 3 });
        string image = Path.Combine(_dir, "fw.bin");
        var bytes = new byte[12288];
        "2.0-TEST"u8.CopyTo(bytes);                      // the model takes the revision from the image's first 8 bytes
        File.WriteAllBytes(image, bytes);
        var d = OkJson(run(Args("fw-download", "--fw", image, "--json")));
        Assert.Equal(12288, d.GetProperty("bytes").GetInt32());
        var c = OkJson(run(Args("fw-commit", "--slot", "2", "--action", "1", "--json")));
        Assert.Equal("ActivatesAtNextReset", c.GetProperty("result").GetString());
        // The next command resets the controller when it starts, which activates slot 2.
        var fw = OkJson(run(Args("fw-log", "--json"))).GetProperty(Bdf);
        Assert.Equal(2, fw.GetProperty("Active Firmware Slot (afi)").GetInt32() & 7);
        Assert.EndsWith("(2.0-TEST)", fw.GetProperty("Firmware Rev Slot 2").GetString(), StringComparison.Ordinal);
        Assert.Equal("2.0-TEST", OkJson(run(Args("id-ctrl", "--json"))).GetProperty("fr").GetString());
        Assert.Equal(2, nvme.Model.ActiveFirmwareSlot);
    }

    [Fact]
    public void Fw_commit_to_a_slot_the_controller_lacks_is_refused_before_the_device()
    {
        var (_, run) = Model(new NvmeDeviceOptions { FirmwareSlots = 2 });
        Assert.Contains("slot", Refused(run(Args("fw-commit", "--slot", "5", "--action", "1")), ExitCodes.DeviceOrHost), StringComparison.Ordinal);
        string odd = Path.Combine(_dir, "odd.bin");
        File.WriteAllBytes(odd, new byte[6]);
        Refused(run(Args("fw-download", "--fw", odd)), ExitCodes.Usage);
        Ok(run(Args("id-ctrl")));
    }

    // ------------------------------------------------------------------------------------------------ I/O command sets

    [Fact]
    public void Nvm_id_ctrl_and_id_iocs_show_the_command_set_structures()
    {
        var (_, run) = Model();
        var nvm = OkJson(run(Args("nvm-id-ctrl", "--json")));
        Assert.Equal(["vsl", "wzsl", "wusl", "dmrl", "dmrsl", "dmsl"], nvm.EnumerateObject().Select(p => p.Name));
        Assert.Equal(255, nvm.GetProperty("dmrl").GetInt32());
        var iocs = OkJson(run(Args("id-iocs", "--json"))).GetProperty("iocs");
        var only = Assert.Single(iocs.EnumerateArray());
        Assert.Equal(0, only.GetProperty("index").GetInt32());
        Assert.Equal(["nvm"], only.GetProperty("command_sets").EnumerateArray().Select(e => e.GetString()));
        Assert.Contains("(nvm)", Ok(run(Args("id-iocs"))).Out, StringComparison.Ordinal);
    }
}
