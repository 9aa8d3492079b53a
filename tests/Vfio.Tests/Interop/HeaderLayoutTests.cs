using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using static Interop.Ioctl;
using static Interop.Vfio;

namespace Vfio.Tests.Uapi;

/// <summary>
/// The C# equivalent of static_asserts against the real headers: every interop struct's size, members, offsets,
/// member sizes and signedness, every constant and ioctl number, compared with what gcc computes from
/// Linux 6.12's linux/vfio.h and linux/iommufd.h (and the libc headers behind Interop.Libc). Fails, rather than skips,
/// without gcc or without those headers (lab/lab.sh headers makes them).
/// </summary>
public class HeaderLayoutTests
{
    public static TheoryData<string> StructNames() => [.. HeaderProbe.Structs.Keys.Order(StringComparer.Ordinal)];

    public static TheoryData<string, string> FlexibleArrayMembers() =>
        [.. HeaderProbe.FlexibleArrays.Select(f => (f.Struct, f.Member))];

    public static TheoryData<string> InteropClassNames() => [.. HeaderProbe.InteropClasses.Select(c => c.Name)];

    [Theory]
    [MemberData(nameof(StructNames))]
    public void StructMatchesHeader(string name)
    {
        var probe = HeaderProbe.Instance;
        var type = HeaderProbe.Structs[name];
        var errors = new List<string>();

        // Blittable: the runtime passes it to the kernel as is, so the managed layout is the native one.
        var pinned = GCHandle.Alloc(Activator.CreateInstance(type), GCHandleType.Pinned); // throws unless blittable
        pinned.Free();
        int managed = (int)typeof(Unsafe).GetMethod(nameof(Unsafe.SizeOf))!.MakeGenericMethod(type).Invoke(null, null)!;
        int marshalled = Marshal.SizeOf(type);
        if (managed != marshalled) { errors.Add($"struct {name}: Unsafe.SizeOf {managed} != Marshal.SizeOf {marshalled} (not blittable?)"); }
        if (probe.Sizes[name] != managed) { errors.Add($"sizeof(struct {name}): C {probe.Sizes[name]}, C# {managed}"); }

        var fields = HeaderProbe.FieldsOf(type);
        foreach (var f in fields)
        {
            var c = probe.Fields[$"{name}.{f.Name}"];
            long offset = Marshal.OffsetOf(type, f.Name);
            long size = Marshal.SizeOf(f.FieldType);
            if (c.Offset != offset) { errors.Add($"{name}.{f.Name}: offset C {c.Offset}, C# {offset}"); }
            if (c.Size != size) { errors.Add($"{name}.{f.Name}: size C {c.Size}, C# {size} ({f.FieldType.Name})"); }
            if (c.Signed is bool signed && signed != HeaderProbe.IsSigned(f.FieldType))
            {
                errors.Add($"{name}.{f.Name}: C is {(signed ? "signed" : "unsigned")}, C# {f.FieldType.Name} is {(signed ? "unsigned" : "signed")}");
            }
            if (c.Signed is null != (HeaderProbe.IntegerWidth(f.FieldType) is null) && !HeaderProbe.UnionStandIns.Contains($"{name}.{f.Name}"))
            {
                errors.Add($"{name}.{f.Name}: C {(c.Signed is null ? "aggregate" : "integer")}, C# {f.FieldType.Name}");
            }
        }

        // Every C member has a C# field, in order; flexible arrays are declared as such and left out on purpose.
        if (!probe.Members.TryGetValue(name, out var cMembers))
        {
            errors.Add($"struct {name}: definition not found in the preprocessed headers");
        }
        else
        {
            var expected = fields.Select(f => f.Name)
                .Concat(HeaderProbe.FlexibleArrays.Where(x => x.Struct == name).Select(x => x.Member + "[]"))
                .ToList();
            if (!cMembers.SequenceEqual(expected))
            {
                errors.Add($"struct {name}: C members [{string.Join(", ", cMembers)}], C# fields [{string.Join(", ", expected)}]");
            }
        }

        Assert.True(errors.Count == 0, string.Join("\n", errors));
    }

    [Theory]
    [MemberData(nameof(FlexibleArrayMembers))]
    public void FlexibleArrayFollowsTheHeader(string structName, string member)
    {
        var probe = HeaderProbe.Instance;
        var (_, _, element) = HeaderProbe.FlexibleArrays.Single(f => f.Struct == structName && f.Member == member);
        var c = probe.Flexible[$"{structName}.{member}"];

        Assert.True(c.Offset == Marshal.SizeOf(HeaderProbe.Structs[structName]),
            $"{structName}.{member}[] starts at {c.Offset} in C, but callers place it at sizeof = {Marshal.SizeOf(HeaderProbe.Structs[structName])}");
        Assert.True(c.ElementSize == Marshal.SizeOf(element),
            $"{structName}.{member}[] elements are {c.ElementSize} bytes in C, {element.Name} is {Marshal.SizeOf(element)}");
    }

    [Theory]
    [MemberData(nameof(InteropClassNames))]
    public void ConstantsMatchHeader(string className)
    {
        var probe = HeaderProbe.Instance;
        var errors = new List<string>();
        var constants = HeaderProbe.ConstantsOf(HeaderProbe.InteropClasses.Single(c => c.Name == className)).ToList();
        Assert.NotEmpty(constants);
        foreach (var f in constants)
        {
            ulong cs = HeaderProbe.ValueOf(f);
            ulong c = probe.Constants[f.Name];
            int width = HeaderProbe.IntegerWidth(f.FieldType)!.Value;
            if (!SameValue(c, cs, width))
            {
                errors.Add($"Interop.{className}.{f.Name}: C 0x{c:x}, C# 0x{cs:x} ({f.FieldType.Name})");
            }
        }
        Assert.True(errors.Count == 0, string.Join("\n", errors));
    }

    /// <summary>
    /// Equal in the C# type's width, and the C value fits that width: zero- or sign-extended from it. (C macros are
    /// mostly int, so (1 &lt;&lt; 31) prints as 0xffffffff80000000 for a C# uint 0x80000000.)
    /// </summary>
    private static bool SameValue(ulong c, ulong cs, int width)
    {
        if (width == 64) { return c == cs; }
        ulong mask = (1UL << width) - 1;
        ulong low = c & mask;
        bool fits = (c & ~mask) == 0 || ((c & ~mask) == ~mask && (low >> (width - 1)) == 1);
        return fits && low == (cs & mask);
    }

    [Fact]
    public void SizedIoctlEncodingsMatchTheCMacros()
    {
        var probe = HeaderProbe.Instance;
        var errors = HeaderProbe.IoctlSamples
            .Where(s => probe.Expressions[s.C] != s.CSharp())
            .Select(s => $"{s.C}: C 0x{probe.Expressions[s.C]:x}, C# 0x{s.CSharp():x}")
            .ToList();
        Assert.True(errors.Count == 0, string.Join("\n", errors));
    }

    [Fact]
    public void EveryIoctlTheLibraryUsesIsChecked()
    {
        string[] required =
        [
            "VFIO_GET_API_VERSION", "VFIO_CHECK_EXTENSION", "VFIO_SET_IOMMU", "VFIO_GROUP_GET_STATUS", "VFIO_GROUP_SET_CONTAINER",
            "VFIO_GROUP_UNSET_CONTAINER", "VFIO_GROUP_GET_DEVICE_FD", "VFIO_DEVICE_GET_INFO", "VFIO_DEVICE_GET_REGION_INFO",
            "VFIO_DEVICE_GET_IRQ_INFO", "VFIO_DEVICE_SET_IRQS", "VFIO_DEVICE_RESET", "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO",
            "VFIO_DEVICE_PCI_HOT_RESET", "VFIO_IOMMU_GET_INFO", "VFIO_IOMMU_MAP_DMA", "VFIO_IOMMU_UNMAP_DMA",
            "TUNSETIFF", "TUNSETOFFLOAD", "TUNSETVNETHDRSZ", "SIOCGIFFLAGS", "SIOCSIFFLAGS", "SIOCGIFMTU", "SIOCSIFMTU", "SIOCGIFHWADDR", "SIOCSIFHWADDR",
        ];
        var probe = HeaderProbe.Instance;
        Assert.All(required, name => Assert.True(probe.Constants.ContainsKey(name), $"{name} is not declared in Interop.Vfio"));
    }

    [Fact]
    public void EpollEventIsPackedTo12Bytes()
    {
        var probe = HeaderProbe.Instance;
        Assert.Equal(12, Unsafe.SizeOf<Interop.Libc.epoll_event>());
        Assert.Equal(12, probe.Sizes["epoll_event"]);
        Assert.Equal(0, probe.Fields["epoll_event.events"].Offset);
        Assert.Equal(4, probe.Fields["epoll_event.data"].Offset);
        Assert.Equal(4, Marshal.OffsetOf<Interop.Libc.epoll_event>(nameof(Interop.Libc.epoll_event.data)));
    }

    [Fact]
    public void IfreqIs40BytesWithTheUnionAfterTheName()
    {
        var probe = HeaderProbe.Instance;
        Assert.Equal(40, probe.Sizes["ifreq"]);
        Assert.Equal(40, Unsafe.SizeOf<Interop.Libc.ifreq>());
        Assert.Equal(16, probe.Fields["ifreq.ifr_ifru"].Offset);
        // TUNSETIFF's size field is sizeof(int), not sizeof(struct ifreq): the macro says int.
        Assert.Equal(4u, ((ulong)Interop.Libc.TUNSETIFF >> _IOC_SIZESHIFT) & ((1u << _IOC_SIZEBITS) - 1));
    }

    [Fact]
    public void IocRejectsFieldsThatDoNotFit()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => _IOC(4, 0, 0, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => _IOC(0, 256, 0, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => _IOC(0, 0, 256, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => _IOC(0, 0, 0, 1 << 14));
        Assert.Equal((nuint)0xC000_0000 | (0x3FFF << 16) | (0xFF << 8) | 0xFF, _IOC(3, 0xFF, 0xFF, 0x3FFF));
    }
}
