using System.Globalization;

namespace Vfio.Cli.Output;

/// <summary>
/// The (JSON name, value) lists of Vfio.Spec.Nvme (<c>NvmeCliFields()</c>) written as nvme-cli 2.3 writes them, the
/// nvme-cli of Debian 12 that the lab guests run: 128-bit counters as decimal strings, power state descriptors with one
/// <c>flags</c> member (MXPS in bit 0, NOPS in bit 1) where later nvme-cli splits it in two. The reference documents
/// are in tests/Vfio.Cli.Tests/NvmeCli.
/// </summary>
internal static class NvmeCliJson
{
    /// <summary>A document of the fields, nested lists of fields becoming nested objects.</summary>
    public static FieldJson Object(IEnumerable<(string JsonName, object Value)> fields)
    {
        var doc = new FieldJson();
        foreach (var (name, value) in fields) { doc.Add(name, Value(name, value)); }
        return doc;
    }

    /// <summary>
    /// nvme-cli 2.3's <c>id-ns -o json</c> members in its order (nvme-print.c, <c>json_nvme_id_ns</c>): nsattr and
    /// nvmsetid right after nvmcap, eui64 before nguid. Vfio.Spec.Nvme's list has them elsewhere; the field-name test
    /// (tests/Vfio.Cli.Tests/NvmeAdminTests.cs) compares the order with nvme-cli's own document.
    /// </summary>
    private static readonly string[] s_idNsOrder =
    [
        "nsze", "ncap", "nuse", "nsfeat", "nlbaf", "flbas", "mc", "dpc", "dps", "nmic", "rescap", "fpi", "dlfeat", "nawun", "nawupf",
        "nacwu", "nabsn", "nabo", "nabspf", "noiob", "nvmcap", "nsattr", "nvmsetid", "npwg", "npwa", "npdg", "npda", "nows", "mssrl",
        "mcl", "msrc", "nulbaf", "anagrpid", "endgid", "eui64", "nguid", "lbafs",
    ];

    // nvme-cli prints the preferred granularities and alignments only when NSFEAT bit 4 (OPTPERF) says they are valid.
    private static readonly string[] s_optimalPerformanceFields = ["npwg", "npwa", "npdg", "npda", "nows"];

    /// <summary>
    /// Identify Namespace as nvme-cli 2.3 writes it: its order, and npwg..nows only when <paramref name="nsfeat"/> bit 4
    /// is set. Names nvme-cli does not know keep their place at the end.
    /// </summary>
    public static FieldJson IdentifyNamespace(IEnumerable<(string JsonName, object Value)> fields, int nsfeat)
    {
        var list = fields.Where(f => (nsfeat & 0x10) != 0 || !s_optimalPerformanceFields.Contains(f.JsonName)).ToList();
        int Rank(string name) => Array.IndexOf(s_idNsOrder, name) is var i and >= 0 ? i : s_idNsOrder.Length;
        return Object(list.Select((f, index) => (f, index)).OrderBy(x => Rank(x.f.JsonName)).ThenBy(x => x.index).Select(x => x.f));
    }

    private static object? Value(string name, object? value) => value switch
    {
        null => null,
        string s => s,
        UInt128 u => u.ToString(CultureInfo.InvariantCulture),
        IEnumerable<(string JsonName, object Value)> fields when name == "psds" => Object(PowerState(fields)),
        IEnumerable<(string JsonName, object Value)> fields => Object(fields),
        IEnumerable<IEnumerable<(string JsonName, object Value)>> list => list.Select(f => (object?)Value(name, f)).ToList(),
        Enum e => Convert.ToUInt64(e, CultureInfo.InvariantCulture),
        _ => value,
    };

    /// <summary>
    /// An Error Information entry as nvme-cli 2.3 prints it: without the NVMe 1.4/2.0 fields it does not know (csi,
    /// opcode, log_page_version), so that a document read by nvme-cli and one read here have the same members.
    /// </summary>
    public static FieldJson ErrorEntry(IEnumerable<(string JsonName, object Value)> fields) =>
        Object(fields.Where(f => f.JsonName is not ("csi" or "opcode" or "log_page_version")));

    /// <summary>nvme-cli 2.3's psd members: max_power_scale and non-operational_state are one <c>flags</c> byte.</summary>
    private static IEnumerable<(string JsonName, object Value)> PowerState(IEnumerable<(string JsonName, object Value)> fields)
    {
        var list = fields.ToList();
        int scale = Convert.ToInt32(list.FirstOrDefault(f => f.JsonName == "max_power_scale").Value ?? 0, CultureInfo.InvariantCulture);
        int nops = Convert.ToInt32(list.FirstOrDefault(f => f.JsonName == "non-operational_state").Value ?? 0, CultureInfo.InvariantCulture);
        foreach (var f in list)
        {
            if (f.JsonName == "max_power_scale") { yield return ("flags", scale & 1 | (nops & 1) << 1); }
            else if (f.JsonName != "non-operational_state") { yield return f; }
        }
    }

    /// <summary>
    /// A firmware revision slot as nvme-cli 2.3's fw-log prints it: the 8 bytes as a little-endian 64-bit number, then
    /// the characters with anything outside '!'..'~' (spaces included) shown as '.'.
    /// </summary>
    public static string FirmwareRevision(ReadOnlySpan<byte> slot)
    {
        ulong n = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(slot);
        var chars = new char[8];
        for (int i = 0; i < 8; i++) { chars[i] = slot[i] is >= 0x21 and <= 0x7e ? (char)slot[i] : '.'; }
        return string.Create(CultureInfo.InvariantCulture, $"{n} ({new string(chars)})");
    }
}
