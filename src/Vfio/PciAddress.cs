using System.Globalization;

namespace Vfio;

/// <summary>
/// A PCI function address, domain:bus:device.function ("0000:00:04.0"), as sysfs names devices.
/// Domain is 16 bits here (32 in theory, 16 in every sysfs name seen), bus 8, device 5, function 3.
/// </summary>
public readonly record struct PciAddress : IComparable<PciAddress>, ISpanParsable<PciAddress>
{
    /// <summary>Creates an address, checking each field's range.</summary>
    public PciAddress(int domain, int bus, int device, int function)
    {
        if ((uint)domain > 0xFFFF) { throw new ArgumentOutOfRangeException(nameof(domain), domain, "PCI domain is 0..0xffff"); }
        if ((uint)bus > 0xFF) { throw new ArgumentOutOfRangeException(nameof(bus), bus, "PCI bus is 0..0xff"); }
        if ((uint)device > 0x1F) { throw new ArgumentOutOfRangeException(nameof(device), device, "PCI device is 0..0x1f"); }
        if ((uint)function > 7) { throw new ArgumentOutOfRangeException(nameof(function), function, "PCI function is 0..7"); }
        (Domain, Bus, Device, Function) = (domain, bus, device, function);
    }

    /// <summary>PCI segment (domain).</summary>
    public int Domain { get; }
    /// <summary>Bus number.</summary>
    public int Bus { get; }
    /// <summary>Device (slot) number.</summary>
    public int Device { get; }
    /// <summary>Function number.</summary>
    public int Function { get; }

    /// <summary>Formats as sysfs does: <c>0000:00:04.0</c>.</summary>
    public override string ToString() =>
        string.Create(CultureInfo.InvariantCulture, $"{Domain:x4}:{Bus:x2}:{Device:x2}.{Function:x1}");

    /// <summary>
    /// Parses <c>DDDD:BB:DD.F</c> or the short form <c>BB:DD.F</c> (domain 0), hexadecimal, case-insensitive.
    /// </summary>
    /// <exception cref="FormatException">The text is not a PCI address; the message says what is wrong.</exception>
    public static PciAddress Parse(string s) => Parse(s.AsSpan());

    /// <inheritdoc cref="Parse(string)"/>
    public static PciAddress Parse(ReadOnlySpan<char> s) =>
        TryParse(s, out var a, out var error) ? a : throw new FormatException($"'{s}' is not a PCI address (expected DDDD:BB:DD.F, e.g. 0000:00:04.0): {error}");

    /// <summary>Parses without throwing.</summary>
    public static bool TryParse(ReadOnlySpan<char> s, out PciAddress result) => TryParse(s, out result, out _);

    private static bool TryParse(ReadOnlySpan<char> s, out PciAddress result, out string error)
    {
        result = default;
        s = s.Trim();
        int dot = s.LastIndexOf('.');
        if (dot < 0) { error = "no '.' before the function"; return false; }
        var fn = s[(dot + 1)..];
        var head = s[..dot];
        int domain = 0;
        int c1 = head.IndexOf(':');
        if (c1 < 0) { error = "no ':' between bus and device"; return false; }
        int c2 = head[(c1 + 1)..].IndexOf(':');
        ReadOnlySpan<char> busText, devText;
        if (c2 >= 0)
        {
            c2 += c1 + 1;
            if (!Hex(head[..c1], 4, out domain)) { error = "domain must be 1-4 hex digits"; return false; }
            busText = head[(c1 + 1)..c2];
            devText = head[(c2 + 1)..];
        }
        else
        {
            busText = head[..c1];
            devText = head[(c1 + 1)..];
        }
        if (!Hex(busText, 2, out int bus)) { error = "bus must be 1-2 hex digits"; return false; }
        if (!Hex(devText, 2, out int dev) || dev > 0x1F) { error = "device must be hex 00-1f"; return false; }
        if (!Hex(fn, 1, out int f) || f > 7) { error = "function must be 0-7"; return false; }
        result = new PciAddress(domain, bus, dev, f);
        error = "";
        return true;
    }

    private static bool Hex(ReadOnlySpan<char> s, int maxDigits, out int value)
    {
        value = 0;
        if (s.IsEmpty || s.Length > maxDigits) { return false; }
        foreach (char c in s)
        {
            if (!char.IsAsciiHexDigit(c)) { return false; }
        }
        return int.TryParse(s, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out value);
    }

    /// <inheritdoc />
    public int CompareTo(PciAddress other) =>
        (Domain, Bus, Device, Function).CompareTo((other.Domain, other.Bus, other.Device, other.Function));

    static PciAddress IParsable<PciAddress>.Parse(string s, IFormatProvider? provider) => Parse(s);
    static bool IParsable<PciAddress>.TryParse(string? s, IFormatProvider? provider, out PciAddress result) => TryParse(s.AsSpan(), out result);
    static PciAddress ISpanParsable<PciAddress>.Parse(ReadOnlySpan<char> s, IFormatProvider? provider) => Parse(s);
    static bool ISpanParsable<PciAddress>.TryParse(ReadOnlySpan<char> s, IFormatProvider? provider, out PciAddress result) => TryParse(s, out result);
}
