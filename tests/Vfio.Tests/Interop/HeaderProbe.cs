using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;

namespace Vfio.Tests.Uapi;

/// <summary>A C struct member as the compiler sees it: offset and size in bytes, and whether it is a signed integer (null for aggregates).</summary>
internal sealed record CField(long Offset, long Size, bool? Signed);

/// <summary>A flexible array member the C# side declares only as "follows the header": its C offset and element size.</summary>
internal sealed record CFlexibleArray(long Offset, long ElementSize);

/// <summary>
/// The C side of the layout tests. Generates a C program from the interop declarations themselves (every struct
/// nested in <c>Interop.Vfio</c> and <c>Interop.Libc</c>, every integral constant and ioctl number in them), compiles
/// it with gcc against the installed headers, runs it, and parses what it prints: sizeof and offsetof of every
/// field, the value of every constant. It also preprocesses the headers and reads the member list of each struct
/// from the source, so a C field missing on the C# side is caught even when it hides in tail padding.
/// Compiled once per test run; a missing gcc is a failure, not a skip: without it nothing vouches for the layouts.
/// </summary>
internal sealed partial class HeaderProbe
{
    /// <summary>Headers the probe includes: the VFIO uapi, and those behind Interop.Libc's constants and structs.</summary>
    public static readonly string[] Headers =
    [
        "stdio.h", "stddef.h", "fcntl.h", "unistd.h", "sys/mman.h", "linux/mman.h", "linux/memfd.h", "sys/eventfd.h",
        "sys/epoll.h", "sys/resource.h", "sys/socket.h", "sys/uio.h", "poll.h", "linux/vfio.h", "linux/iommufd.h",
        "linux/if.h", "linux/if_tun.h", "linux/if_arp.h", "linux/sockios.h", "linux/mempolicy.h", "sys/syscall.h",
    ];

    /// <summary>Interop classes whose nested structs and constants are checked.</summary>
    public static readonly Type[] InteropClasses = [typeof(Interop.Ioctl), typeof(Interop.Vfio), typeof(Interop.Iommufd), typeof(Interop.Libc)];

    /// <summary>
    /// Flexible array members (<c>T name[]</c>) that the C# structs leave out: the array follows the header at
    /// sizeof(header) in the caller's buffer. Struct, member, C# element type.
    /// </summary>
    public static readonly (string Struct, string Member, Type Element)[] FlexibleArrays =
    [
        ("vfio_region_info_cap_sparse_mmap", "areas", typeof(Interop.Vfio.vfio_region_sparse_mmap_area)),
        ("vfio_irq_set", "data", typeof(byte)),
        ("vfio_pci_hot_reset_info", "devices", typeof(Interop.Vfio.vfio_pci_dependent_device)),
        ("vfio_pci_hot_reset", "group_fds", typeof(int)),
        ("vfio_iommu_type1_info_cap_iova_range", "iova_ranges", typeof(Interop.Vfio.vfio_iova_range)),
        ("vfio_iommu_type1_dma_unmap", "data", typeof(byte)),
        ("cmsghdr", "__cmsg_data", typeof(byte)),
    ];

    /// <summary>
    /// Members that are unions in C and an integer of the union's size in C#: <c>epoll_data_t</c> is a union of
    /// ptr/fd/u32/u64, carried as the u64. Their signedness is not compared.
    /// </summary>
    public static readonly HashSet<string> UnionStandIns = ["epoll_event.data"];

    /// <summary>Sized ioctl encodings, C macro against the C# helper (VFIO itself uses only _IO, checked as constants).</summary>
    public static readonly (string C, Func<ulong> CSharp)[] IoctlSamples =
    [
        ("_IOR(VFIO_TYPE, VFIO_BASE + 3, struct vfio_group_status)", () => Interop.Ioctl._IOR<Interop.Vfio.vfio_group_status>(Interop.Vfio.VFIO_TYPE, Interop.Vfio.VFIO_BASE + 3)),
        ("_IOW(VFIO_TYPE, VFIO_BASE + 10, struct vfio_irq_set)", () => Interop.Ioctl._IOW<Interop.Vfio.vfio_irq_set>(Interop.Vfio.VFIO_TYPE, Interop.Vfio.VFIO_BASE + 10)),
        ("_IOWR(VFIO_TYPE, VFIO_BASE + 8, struct vfio_region_info)", () => Interop.Ioctl._IOWR<Interop.Vfio.vfio_region_info>(Interop.Vfio.VFIO_TYPE, Interop.Vfio.VFIO_BASE + 8)),
        ("_IOWR(0xff, 0xff, struct vfio_iommu_type1_dma_map)", () => Interop.Ioctl._IOWR<Interop.Vfio.vfio_iommu_type1_dma_map>(0xff, 0xff)),
        ("_IOR('E', 0, struct epoll_event)", () => Interop.Ioctl._IOR<Interop.Libc.epoll_event>('E', 0)),
        ("_IO(0, 0)", () => Interop.Ioctl._IO(0, 0)),
        // ifreq's union members are reached through linux/if.h's macros (ifr_flags is ifr_ifru.ifru_flags): the probe
        // checks the two unions as wholes, these their members.
        ("offsetof(struct ifreq, ifr_name)", () => (ulong)Marshal.OffsetOf<Interop.Libc.ifreq>(nameof(Interop.Libc.ifreq.ifr_ifrn))),
        ("offsetof(struct ifreq, ifr_flags)", () => IfreqUnionOffset(nameof(Interop.Libc.ifreq.ifreq_ifru.ifru_flags))),
        ("offsetof(struct ifreq, ifr_mtu)", () => IfreqUnionOffset(nameof(Interop.Libc.ifreq.ifreq_ifru.ifru_mtu))),
        ("offsetof(struct ifreq, ifr_hwaddr)", () => IfreqUnionOffset(nameof(Interop.Libc.ifreq.ifreq_ifru.ifru_hwaddr))),
        ("sizeof(((struct ifreq *)0)->ifr_flags)", () => (ulong)sizeof(short)),
        ("sizeof(((struct ifreq *)0)->ifr_mtu)", () => (ulong)sizeof(int)),
        ("sizeof(((struct ifreq *)0)->ifr_hwaddr)", () => (ulong)Marshal.SizeOf<Interop.Libc.sockaddr>()),
        ("sizeof(((struct ifreq *)0)->ifr_ifru)", () => (ulong)Marshal.SizeOf<Interop.Libc.ifreq.ifreq_ifru>()),
    ];

    private static ulong IfreqUnionOffset(string member) =>
        (ulong)(Marshal.OffsetOf<Interop.Libc.ifreq>(nameof(Interop.Libc.ifreq.ifr_ifru)) + Marshal.OffsetOf<Interop.Libc.ifreq.ifreq_ifru>(member));

    private static readonly Lazy<HeaderProbe> s_instance = new(Run);

    /// <summary>The probe's results; the first use compiles and runs it (and throws, failing the test, if it cannot).</summary>
    public static HeaderProbe Instance => s_instance.Value;

    public Dictionary<string, long> Sizes { get; } = [];
    public Dictionary<string, CField> Fields { get; } = [];
    public Dictionary<string, CFlexibleArray> Flexible { get; } = [];
    public Dictionary<string, ulong> Constants { get; } = [];
    public Dictionary<string, ulong> Expressions { get; } = [];

    /// <summary>Member names of each struct, in declaration order, read from the preprocessed headers.</summary>
    public Dictionary<string, List<string>> Members { get; } = [];

    /// <summary>Every blittable struct nested in the interop classes, by its C name (the C# name is the same).</summary>
    public static IReadOnlyDictionary<string, Type> Structs { get; } = InteropClasses
        .SelectMany(c => c.GetNestedTypes(BindingFlags.Public | BindingFlags.NonPublic))
        .Where(t => t.IsValueType && !t.IsEnum)
        .ToDictionary(t => t.Name);

    /// <summary>The instance fields of a C# struct, in declaration (= layout) order.</summary>
    public static FieldInfo[] FieldsOf(Type t) =>
        [.. t.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic).OrderBy(f => f.MetadataToken)];

    /// <summary>Every integral constant or static readonly integral field of an interop class.</summary>
    public static IEnumerable<FieldInfo> ConstantsOf(Type c) =>
        c.GetFields(BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly)
            .Where(f => (f.IsLiteral || f.IsInitOnly) && IntegerWidth(f.FieldType) is not null);

    /// <summary>Bit width of an integral type, null for anything else.</summary>
    public static int? IntegerWidth(Type t) =>
        t == typeof(byte) || t == typeof(sbyte) ? 8
        : t == typeof(short) || t == typeof(ushort) || t == typeof(char) ? 16
        : t == typeof(int) || t == typeof(uint) ? 32
        : t == typeof(long) || t == typeof(ulong) ? 64
        : t == typeof(nint) || t == typeof(nuint) ? IntPtr.Size * 8
        : null;

    /// <summary>Whether an integral type is signed.</summary>
    public static bool IsSigned(Type t) => t == typeof(sbyte) || t == typeof(short) || t == typeof(int) || t == typeof(long) || t == typeof(nint);

    /// <summary>A constant's value as the C side prints it: sign-extended to 64 bits, then unsigned.</summary>
    public static ulong ValueOf(FieldInfo f) => f.GetValue(null) switch
    {
        sbyte v => (ulong)(long)v, short v => (ulong)(long)v, int v => (ulong)(long)v, long v => (ulong)v, nint v => (ulong)(long)v,
        byte v => v, ushort v => v, char v => v, uint v => v, ulong v => v, nuint v => v,
        var v => throw new InvalidOperationException($"{f.Name} has unexpected type {v?.GetType()}"),
    };

    private static HeaderProbe Run()
    {
        string compiler = FindCompiler();
        var dir = Directory.CreateTempSubdirectory("vfio-header-probe-");
        try
        {
            string source = Path.Combine(dir.FullName, "probe.c");
            string exe = Path.Combine(dir.FullName, "probe");
            File.WriteAllText(source, GenerateSource());

            string uapi = FindUapiHeaders();
            Exec(compiler, ["-std=gnu11", "-Wall", "-I", uapi, "-o", exe, source], "compiling the header probe", source);
            string output = Exec(exe, [], "running the header probe", source);
            string preprocessed = Exec(compiler, ["-std=gnu11", "-I", uapi, "-E", "-P", source], "preprocessing the headers", source);

            var probe = new HeaderProbe();
            probe.Parse(output);
            probe.ReadMembers(preprocessed);
            return probe;
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    /// <summary>
    /// The kernel uapi headers the probe compiles against, searched before /usr/include: Linux 6.12's (made by
    /// <c>lab/lab.sh headers</c> from linux-source-6.12 into the lab cache; <c>./run test</c> does that first and
    /// passes the directory in <c>VFIO_UAPI_INCLUDE</c>). The distribution's linux-libc-dev (6.1 on bookworm) has
    /// no linux/iommufd.h and no vfio cdev ioctls, so it cannot vouch for them: missing headers fail the tests.
    /// </summary>
    internal static string FindUapiHeaders()
    {
        if (Environment.GetEnvironmentVariable("VFIO_UAPI_INCLUDE") is { Length: > 0 } explicitDir)
        {
            return File.Exists(Path.Combine(explicitDir, "linux", "iommufd.h"))
                ? explicitDir
                : throw new InvalidOperationException($"VFIO_UAPI_INCLUDE={explicitDir} has no linux/iommufd.h; run 'lab/lab.sh headers' (as root) to make them");
        }
        string cache = Environment.GetEnvironmentVariable("VFIO_LAB_CACHE") is { Length: > 0 } c ? c : "/var/cache/vfio-dotnet-lab";
        var found = Directory.Exists(cache)
            ? new DirectoryInfo(cache).GetDirectories("uapi-6.12-*")
                .Where(d => File.Exists(Path.Combine(d.FullName, "include", "linux", "iommufd.h")))
                .OrderByDescending(d => d.LastWriteTimeUtc).FirstOrDefault()
            : null;
        return found is not null
            ? Path.Combine(found.FullName, "include")
            : throw new InvalidOperationException(
                $"no Linux 6.12 uapi headers in {cache} (uapi-6.12-*/include) and VFIO_UAPI_INCLUDE is not set. The layout " +
                "tests check the iommufd and vfio cdev structures against linux/iommufd.h, which the distribution's headers " +
                "lack. Run 'lab/lab.sh headers' as root (./run test does) to extract them from linux-source-6.12.");
    }

    private static string FindCompiler()
    {
        if (Environment.GetEnvironmentVariable("CC") is { Length: > 0 } cc) { return cc; }
        foreach (string d in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = Path.Combine(d, "gcc");
            if (File.Exists(candidate)) { return candidate; }
        }
        throw new InvalidOperationException(
            "gcc was not found on PATH (nor set in $CC). The interop layout tests compile a C probe against " +
            "the kernel uapi headers and cannot vouch for any struct layout or ioctl number without it. " +
            "Install a C compiler and the kernel headers (Debian/Ubuntu: apt-get install gcc linux-libc-dev).");
    }

    private static string Exec(string file, string[] args, string what, string source)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in args) { psi.ArgumentList.Add(a); }
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"{what}: could not start {file}");
        var stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        if (!p.WaitForExit(TimeSpan.FromMinutes(2)))
        {
            p.Kill();
            throw new InvalidOperationException($"{what}: {file} timed out");
        }
        if (p.ExitCode != 0)
        {
            // A C# name with no C counterpart shows up here as "'X' undeclared" or "has no member named 'y'".
            throw new InvalidOperationException(
                $"{what} failed ({file} exited with {p.ExitCode}). Each C# interop name must exist in the headers " +
                $"({string.Join(", ", Headers)}).\n{stderr.Result}\n--- probe source ---\n{File.ReadAllText(source)}");
        }
        return stdout;
    }

    private static string GenerateSource()
    {
        var c = new StringBuilder();
        c.AppendLine("#define _GNU_SOURCE");
        foreach (string h in Headers) { c.AppendLine($"#include <{h}>"); }
        c.AppendLine("#define SIGNED(x) (((__typeof__(x))-1) < 0)");
        c.AppendLine("int main(void)\n{");
        foreach (var (name, type) in Structs)
        {
            c.AppendLine($"    printf(\"sizeof {name} %zu\\n\", sizeof(struct {name}));");
            foreach (var f in FieldsOf(type))
            {
                string member = $"((struct {name} *)0)->{f.Name}";
                string signed = IntegerWidth(f.FieldType) is null || UnionStandIns.Contains($"{name}.{f.Name}") ? "-1" : $"SIGNED({member})";
                c.AppendLine($"    printf(\"field {name}.{f.Name} %zu %zu %d\\n\", offsetof(struct {name}, {f.Name}), sizeof({member}), {signed});");
            }
        }
        foreach (var (name, member, _) in FlexibleArrays)
        {
            c.AppendLine($"    printf(\"flex {name}.{member} %zu %zu\\n\", offsetof(struct {name}, {member}), sizeof(((struct {name} *)0)->{member}[0]));");
        }
        foreach (var f in InteropClasses.SelectMany(ConstantsOf))
        {
            c.AppendLine($"    printf(\"const {f.Name} %llu\\n\", (unsigned long long)({f.Name}));");
        }
        for (int i = 0; i < IoctlSamples.Length; i++)
        {
            c.AppendLine($"    printf(\"expr {i} %llu\\n\", (unsigned long long)({IoctlSamples[i].C}));");
        }
        c.AppendLine("    return 0;\n}");
        return c.ToString();
    }

    private void Parse(string output)
    {
        foreach (string line in output.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            string[] p = line.Split(' ');
            switch (p[0])
            {
                case "sizeof": Sizes[p[1]] = long.Parse(p[2], CultureInfo.InvariantCulture); break;
                case "field":
                    int sign = int.Parse(p[4], CultureInfo.InvariantCulture);
                    Fields[p[1]] = new CField(long.Parse(p[2], CultureInfo.InvariantCulture), long.Parse(p[3], CultureInfo.InvariantCulture),
                        sign < 0 ? null : sign == 1);
                    break;
                case "flex": Flexible[p[1]] = new CFlexibleArray(long.Parse(p[2], CultureInfo.InvariantCulture), long.Parse(p[3], CultureInfo.InvariantCulture)); break;
                case "const": Constants[p[1]] = ulong.Parse(p[2], CultureInfo.InvariantCulture); break;
                case "expr": Expressions[IoctlSamples[int.Parse(p[1], CultureInfo.InvariantCulture)].C] = ulong.Parse(p[2], CultureInfo.InvariantCulture); break;
                default: throw new InvalidOperationException($"unexpected probe output line: {line}");
            }
        }
    }

    /// <summary>
    /// Reads each checked struct's member names from the preprocessed headers (no comments, no macros left):
    /// <c>struct NAME { decl; decl; ... }</c>, splitting declarations at top-level semicolons and commas and taking the
    /// last identifier before any array brackets or bit-field width. Flexible arrays are reported with "[]".
    /// </summary>
    private void ReadMembers(string preprocessed)
    {
        foreach (string name in Structs.Keys)
        {
            var m = Regex.Match(preprocessed, $@"\bstruct\s+{name}\s*\{{");
            if (!m.Success) { continue; }
            int depth = 0, start = m.Index + m.Length, i = start;
            for (; i < preprocessed.Length; i++)
            {
                if (preprocessed[i] == '{') { depth++; }
                else if (preprocessed[i] == '}') { if (depth-- == 0) { break; } }
            }
            var members = new List<string>();
            foreach (string decl in SplitTopLevel(preprocessed[start..i], ';'))
            {
                string clean = AttributeRegex().Replace(decl, " ");
                // An anonymous union ("union { __u32 group_id; __u32 devid; };", Linux 6.6+ in vfio_pci_dependent_device)
                // shares one slot: the C# struct carries it as its first member, whose offset and size the probe checks.
                if (AnonymousAggregateRegex().Match(clean) is { Success: true } anonymous)
                {
                    var first = SplitTopLevel(anonymous.Groups[1].Value, ';').Select(d => d.Trim()).First(d => d.Length > 0);
                    members.Add(DeclaratorRegex().Match(SplitTopLevel(first, ',').First().Trim()).Groups[1].Value);
                    continue;
                }
                foreach (string declarator in SplitTopLevel(clean, ',').Select(d => d.Trim()).Where(d => d.Length > 0))
                {
                    var id = DeclaratorRegex().Match(declarator);
                    if (!id.Success) { throw new InvalidOperationException($"struct {name}: cannot read member from \"{declarator}\""); }
                    members.Add(id.Groups[1].Value + (id.Groups[2].Value.Replace(" ", "", StringComparison.Ordinal) == "[]" ? "[]" : ""));
                }
            }
            Members[name] = members;
        }
    }

    private static IEnumerable<string> SplitTopLevel(string text, char separator)
    {
        int depth = 0, from = 0;
        for (int i = 0; i < text.Length; i++)
        {
            char ch = text[i];
            if (ch is '{' or '(' or '[') { depth++; }
            else if (ch is '}' or ')' or ']') { depth--; }
            else if (ch == separator && depth == 0)
            {
                yield return text[from..i];
                from = i + 1;
            }
        }
        if (text[from..].Trim().Length > 0) { yield return text[from..]; }
    }

    [GeneratedRegex(@"__attribute__\s*\(\((?:[^()]|\([^()]*\))*\)\)")]
    private static partial Regex AttributeRegex();

    [GeneratedRegex(@"^\s*(?:union|struct)\s*\{(.*)\}\s*$", RegexOptions.Singleline)]
    private static partial Regex AnonymousAggregateRegex();

    [GeneratedRegex(@"(\w+)\s*((?:\[[^\]]*\]\s*)*)(?::\s*\d+)?\s*$")]
    private static partial Regex DeclaratorRegex();
}
