using CsCheck;

namespace Vfio.Tests;

public sealed class PciAddressTests
{
    private static readonly Gen<PciAddress> Addresses =
        Gen.Select(Gen.Int[0, 0xFFFF], Gen.Int[0, 0xFF], Gen.Int[0, 0x1F], Gen.Int[0, 7])
            .Select(t => new PciAddress(t.Item1, t.Item2, t.Item3, t.Item4));

    [Fact]
    public void Formats_as_sysfs_names_devices()
    {
        Assert.Equal("0000:00:04.0", new PciAddress(0, 0, 4, 0).ToString());
        Assert.Equal("abcd:ff:1f.7", new PciAddress(0xabcd, 0xff, 0x1f, 7).ToString());
    }

    [Theory]
    [InlineData("0000:00:04.0", 0, 0, 4, 0)]
    [InlineData("0000:3b:00.1", 0, 0x3b, 0, 1)]
    [InlineData("ABCD:FF:1F.7", 0xabcd, 0xff, 0x1f, 7)]
    [InlineData("1:2:3.4", 1, 2, 3, 4)]
    [InlineData(" 0000:00:04.0\n", 0, 0, 4, 0)]   // as read from a sysfs attribute
    public void Parses_the_long_form(string text, int domain, int bus, int device, int function)
    {
        Assert.Equal(new PciAddress(domain, bus, device, function), PciAddress.Parse(text));
    }

    [Theory]
    [InlineData("00:04.0", 0, 4, 0)]
    [InlineData("3b:00.1", 0x3b, 0, 1)]
    [InlineData("ff:1f.7", 0xff, 0x1f, 7)]
    public void Short_form_means_domain_zero(string text, int bus, int device, int function)
    {
        Assert.Equal(new PciAddress(0, bus, device, function), PciAddress.Parse(text));
    }

    [Theory]
    [InlineData("")]
    [InlineData("0000:00:04")]
    [InlineData("zz:00.0")]
    [InlineData("0000:00:20.0")]
    [InlineData("0000:00:04.8")]
    [InlineData("00000:00:04.0")]
    [InlineData("0000:000:04.0")]
    [InlineData("0000:00:04.")]
    [InlineData(".0")]
    [InlineData("0000:00:-4.0")]
    [InlineData("0000:00:+4.0")]
    [InlineData("0:0000:00:04.0")]
    [InlineData("0000:00:04.0.0")]
    [InlineData("0000::04.0")]
    public void Invalid_text_is_a_FormatException_naming_the_input(string text)
    {
        var e = Assert.Throws<FormatException>(() => PciAddress.Parse(text));
        Assert.Contains($"'{text}'", e.Message, StringComparison.Ordinal);
        Assert.False(PciAddress.TryParse(text, out _));
    }

    [Fact]
    public void Fields_are_range_checked()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new PciAddress(0x10000, 0, 0, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new PciAddress(0, 0x100, 0, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new PciAddress(0, 0, 0x20, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new PciAddress(0, 0, 0, 8));
        Assert.Throws<ArgumentOutOfRangeException>(() => new PciAddress(-1, 0, 0, 0));
    }

    [Fact]
    public void Format_then_parse_is_the_identity()
    {
        Addresses.Sample(a => PciAddress.Parse(a.ToString()) == a);
    }

    [Fact]
    public void Parse_is_case_insensitive()
    {
        Addresses.Sample(a => PciAddress.Parse(a.ToString().ToUpperInvariant()) == a);
    }

    [Fact]
    public void Short_form_round_trips_for_domain_zero()
    {
        Addresses.Select(a => new PciAddress(0, a.Bus, a.Device, a.Function))
            .Sample(a => PciAddress.Parse(a.ToString()[5..]) == a);
    }

    [Fact]
    public void Order_is_domain_bus_device_function()
    {
        Addresses.Select(Addresses).Sample((a, b) =>
            Math.Sign(a.CompareTo(b)) == Math.Sign(string.CompareOrdinal(a.ToString(), b.ToString())));
    }

    [Fact]
    public void Works_through_ISpanParsable()
    {
        Assert.Equal(new PciAddress(0, 0, 4, 0), ParseVia<PciAddress>("0000:00:04.0"));
        Assert.False(PciAddress.TryParse("nope".AsSpan(), out _));

        static T ParseVia<T>(string s) where T : ISpanParsable<T> => T.Parse(s.AsSpan(), null);
    }
}
