using Vfio.Tap;
using System.Buffers.Binary;
using System.Net.NetworkInformation;
using Vfio.Tests.Linux;

namespace Vfio.Tests.Net;

/// <summary>
/// <see cref="TapInterface"/> against the kernel's TUN/TAP driver, each test in a network namespace of its own
/// (<see cref="NetNamespace"/>), so the host's interfaces are never touched. Needs root, as the test suite does.
/// </summary>
public sealed class TapInterfaceTests : IDisposable
{
    private static readonly PhysicalAddress Mac = PhysicalAddress.Parse("02-76-66-69-6f-01");
    private readonly NetNamespace _ns = new();

    public void Dispose() => _ns.Dispose();

    [Fact]
    public void Create_sets_the_name_mac_mtu_and_brings_the_interface_up()
    {
        _ns.Run(() =>
        {
            using var tap = TapInterface.Create("vfiotest0", Mac, 1400);
            Assert.Equal("vfiotest0", tap.Name);
            Assert.Equal(Mac, tap.MacAddress);
            Assert.Equal(1400, tap.Mtu);
            Assert.True(tap.IsUp);
            tap.SetUp(false);
            Assert.False(tap.IsUp);
        });
        // The interface went away with its descriptor (it is not persistent).
        Assert.Contains("does not exist", _ns.Exec("ip", "link", "show", "vfiotest0").Output, StringComparison.Ordinal);
    }

    [Fact]
    public void Without_a_name_the_kernel_picks_one()
    {
        string name = _ns.Run(() =>
        {
            using var tap = TapInterface.Create();
            return tap.Name;
        });
        Assert.StartsWith("tap", name, StringComparison.Ordinal);
    }

    [Fact]
    public void A_name_in_use_is_refused_with_a_hint()
    {
        _ns.Run(() =>
        {
            using var first = TapInterface.Create("vfiotest0");
            var taken = Assert.ThrowsAny<VfioException>(() => TapInterface.Create("vfiotest0"));
            Assert.Contains("already in use", taken.Message, StringComparison.Ordinal);
            // lo is in every namespace and is not a TAP.
            var notTap = Assert.ThrowsAny<VfioException>(() => TapInterface.Create("lo"));
            Assert.Contains("already in use", notTap.Message, StringComparison.Ordinal);
            // The first is unharmed.
            Assert.True(first.IsUp);
        });
    }

    [Theory]
    [InlineData("")]
    [InlineData("sixteen-bytes-xx")]
    [InlineData("a/b")]
    [InlineData("a b")]
    [InlineData("..")]
    [InlineData("tap%d")]
    public void Bad_names_are_refused_before_any_ioctl(string name)
    {
        Assert.Throws<ArgumentException>(() => TapInterface.Create(name));
    }

    [Fact]
    public void Frames_go_both_ways()
    {
        _ns.Run(() =>
        {
            using var tap = TapInterface.Create("vfiotest0", Mac, 1500);
            // What the kernel sends once the interface is up: IPv6 duplicate address detection and MLD reports for
            // the link-local address it gives itself (RFC 4862 §5.4), from the MAC set above.
            var frame = new byte[1514];
            int n = 0;
            for (int i = 0; i < 100 && n == 0; i++)
            {
                tap.WaitReadable(100);
                n = tap.Read(frame);
            }
            Assert.True(n >= 14, "the kernel sent nothing on the TAP in 10 s");
            Assert.Equal(Mac.GetAddressBytes(), frame[6..12]);
            Assert.Equal(0x86DD, BinaryPrimitives.ReadUInt16BigEndian(frame.AsSpan(12)));
        });

        // A frame written on the TAP is a frame the kernel received on it.
        var counted = _ns.Run(() =>
        {
            using var tap = TapInterface.Create("vfiotest1", Mac, 1500);
            var frame = new byte[60];
            frame.AsSpan(0, 6).Fill(0xff);
            Mac.GetAddressBytes().CopyTo(frame, 6);
            BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(12), 0x88B5);
            var rx0 = ReadRx("vfiotest1");
            Assert.True(tap.Write(frame));
            Assert.True(tap.Write(frame));
            return ReadRx("vfiotest1") - rx0;
        });
        Assert.Equal(2, counted);
    }

    private static long ReadRx(string name) => NetNamespace.ReadCounters(name).RxPackets;
}
