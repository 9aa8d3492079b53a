using System.Net;

namespace Vfio.Igb.Tests;

/// <summary>
/// The Toeplitz hash against the published verification vectors (Microsoft's "Verifying the RSS Hash Calculation",
/// reproduced in the 82576 datasheet §7.1.2.8.3 and the 82599 datasheet §7.1.2.8.3), with the verification key.
/// </summary>
public sealed class ToeplitzHashTests
{
    public static TheoryData<string, ushort, string, ushort, uint, uint> Ipv4Vectors() => new()
    {
        // destination:port, source:port, IPv4 hash, IPv4+TCP hash
        { "161.142.100.80", 1766, "66.9.149.187", 2794, 0x323e8fc2, 0x51ccc178 },
        { "65.69.140.83", 4739, "199.92.111.2", 14230, 0xd718262a, 0xc626b0ea },
        { "12.22.207.184", 38024, "24.19.198.95", 12898, 0xd2d0a5de, 0x5c2b394a },
        { "209.142.163.6", 2217, "38.27.205.30", 48228, 0x82989176, 0xafc7327f },
        { "202.188.127.2", 1303, "153.39.163.191", 44251, 0x5d1809c5, 0x10e828a2 },
    };

    public static TheoryData<string, ushort, string, ushort, uint, uint> Ipv6Vectors() => new()
    {
        { "3ffe:2501:200:3::1", 1766, "3ffe:2501:200:1fff::7", 2794, 0x2cc18cd5, 0x40207d3d },
        { "ff02::1", 4739, "3ffe:501:8::260:97ff:fe40:efab", 14230, 0x0f0c461c, 0xdde51bbf },
        { "fe80::200:f8ff:fe21:67cf", 38024, "3ffe:1900:4545:3:200:f8ff:fe21:67cf", 44251, 0x4b61e985, 0x02d1feef },
    };

    [Theory]
    [MemberData(nameof(Ipv4Vectors))]
    [MemberData(nameof(Ipv6Vectors))]
    public void Flow_hash_matches_the_verification_suite(string destination, ushort destinationPort, string source, ushort sourcePort, uint addressesOnly, uint withPorts)
    {
        var key = IgbRssConfiguration.VerificationKey;
        var src = IPAddress.Parse(source);
        var dst = IPAddress.Parse(destination);
        Assert.Equal(addressesOnly, ToeplitzHash.ComputeFlow(key, src, dst));
        Assert.Equal(withPorts, ToeplitzHash.ComputeFlow(key, src, dst, sourcePort, destinationPort));
    }

    [Fact]
    public void Raw_input_of_zeros_hashes_to_zero_and_a_single_bit_selects_the_key_window()
    {
        var key = IgbRssConfiguration.VerificationKey;
        Assert.Equal(0u, ToeplitzHash.Compute(key, new byte[12]));
        // Only the first input bit set: the result is the key's first 32 bits.
        Assert.Equal(0x6d5a56dau, ToeplitzHash.Compute(key, [0x80]));
        // Only bit 8 set: key bits 8..39.
        Assert.Equal(0x5a56da25u, ToeplitzHash.Compute(key, [0x00, 0x80]));
    }

    [Fact]
    public void A_key_shorter_than_input_plus_four_bytes_is_refused()
    {
        Assert.Throws<ArgumentException>(() => ToeplitzHash.Compute(new byte[8], new byte[5]));
        Assert.Throws<ArgumentException>(() => ToeplitzHash.ComputeFlow(IgbRssConfiguration.VerificationKey, IPAddress.Parse("169.254.0.1"), IPAddress.Parse("::1")));
    }

    [Fact]
    public void Redirection_table_maps_the_low_seven_hash_bits_to_a_queue()
    {
        var rss = IgbRssConfiguration.RoundRobin(3);
        Assert.Equal(0, rss.QueueFor(0));
        Assert.Equal(1, rss.QueueFor(1));
        Assert.Equal(127 % 3, rss.QueueFor(0xFFFF_FF7F));   // bits above 6 ignored
        Assert.Equal(0, rss.QueueFor(0x80));      // bit 7 is not part of the index
    }

    [Fact]
    public void Key_and_table_registers_hold_their_first_byte_low()
    {
        var table = new byte[128];
        table[0] = 1; table[1] = 2; table[2] = 3; table[3] = 4; table[127] = 9;
        var rss = new IgbRssConfiguration(IgbRssConfiguration.VerificationKey, table);
        Assert.Equal(0xda565a6du, rss.KeyRegister(0));
        Assert.Equal(0xfa01acbeu, rss.KeyRegister(9));
        Assert.Equal(0x04030201u, rss.TableRegister(0));
        Assert.Equal(0x09000000u, rss.TableRegister(31));
        Assert.Throws<ArgumentException>(() => new IgbRssConfiguration(new byte[39], table));
        Assert.Throws<ArgumentException>(() => new IgbRssConfiguration(IgbRssConfiguration.VerificationKey, new byte[64]));
        Assert.Throws<ArgumentOutOfRangeException>(() => IgbRssConfiguration.RoundRobin(17));
    }
}
