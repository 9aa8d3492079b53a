using System.Buffers.Binary;
using Vfio.Spec.Virtio;
using Vfio.VirtioNet.Tests.Emulation;
using Vfio.VirtioNet.Virtio;

namespace Vfio.VirtioNet.Tests;

public sealed class VirtioPciLayoutTests
{
    private static byte[] Image(params (int At, int Next, VirtioPciCapType Type, byte Bar, uint Offset, uint Length, byte CapLen)[] caps)
    {
        var c = new byte[256];
        BinaryPrimitives.WriteUInt16LittleEndian(c.AsSpan(0x06), 1 << 4);
        c[0x34] = caps.Length == 0 ? (byte)0 : (byte)caps[0].At;
        foreach (var cap in caps)
        {
            EmulatedVirtioNet.WriteCap(c, cap.At, cap.Next, cap.Type, cap.Offset, cap.Length, cap.CapLen, cap.Bar);
        }
        return c;
    }

    [Fact]
    public void FindsTheFourStructuresOfTheEmulatedDevice()
    {
        var dev = new EmulatedVirtioNet(PciAddress.Parse("0000:00:07.0"), [2, 0, 0, 0, 0, 1]);
        var layout = VirtioPciLayout.Parse(VirtioPciLayout.ReadConfigImage(dev.Config));
        Assert.Equal(new VirtioStructure(VirtioPciCapType.Common, 4, 0, 0x38, 0x40), layout.Common);
        Assert.Equal(VirtioPciCapType.Isr, layout.Isr.Type);
        Assert.Equal(0x1000u, layout.Isr.Offset);
        Assert.Equal(0x2000u, layout.Device!.Value.Offset);
        Assert.Equal(0x3000u, layout.Notify.Offset);
        Assert.Equal(4u, layout.NotifyOffMultiplier);
        Assert.Equal(0x3000UL + 3 * 4, layout.DoorbellOffset(3));
    }

    // Config space of QEMU 7.2's virtio-net-pci,disable-legacy=on (the lab's NET0), first 192 bytes as read from sysfs in
    // a guest (xxd -p); the rest is zero. Capabilities: MSI-X at 0x98, then vendor caps at 0x84 (PCI cfg access),
    // 0x70 (notify: BAR4 0x3000, multiplier 4), 0x60 (device: BAR4 0x2000), 0x50 (ISR: 0x1000), 0x40 (common: 0x0).
    private const string QemuVirtioNetConfig =
        "f41a4110070510000100000200000000000000000040b8fe0000000000000000" +
        "0cc0befe0000000000000000f41a00110000b0fe98000000000000000b010000" +
        "0900100104000000000000000010000009401003040000000010000000100000" +
        "0950100404000000002000000010000009601402040000000030000000100000" +
        "0400000009701405000000000000000000000000000000001184038001000000" +
        "0108000000000000000000000000000000000000000000000000000000000000" +
        "";

    [Fact]
    public void ParsesARecordedQemuConfigSpace()
    {
        var image = new byte[256];
        Convert.FromHexString(QemuVirtioNetConfig).CopyTo(image, 0);
        var layout = VirtioPciLayout.Parse(image);
        Assert.Equal(new VirtioStructure(VirtioPciCapType.Common, 4, 0x0000, 0x1000, 0x40), layout.Common);
        Assert.Equal(new VirtioStructure(VirtioPciCapType.Isr, 4, 0x1000, 0x1000, 0x50), layout.Isr);
        Assert.Equal(new VirtioStructure(VirtioPciCapType.Device, 4, 0x2000, 0x1000, 0x60), layout.Device);
        Assert.Equal(new VirtioStructure(VirtioPciCapType.Notify, 4, 0x3000, 0x1000, 0x70), layout.Notify);
        Assert.Equal(4u, layout.NotifyOffMultiplier);
        Assert.Equal(0x3004UL, layout.DoorbellOffset(1));
    }

    [Fact]
    public void FirstUsableCapabilityOfEachTypeWins_SkippingBadBarsAndShortCaps()
    {
        var image = Image(
            (0x40, 0x50, VirtioPciCapType.Common, 7, 0x100, 0x38, 16),     // BAR 7 does not exist: skipped
            (0x50, 0x60, VirtioPciCapType.Common, 2, 0x200, 0x38, 16),     // the one used
            (0x60, 0x70, VirtioPciCapType.Notify, 2, 0x300, 0x100, 16),    // cap_len 16 cannot hold the multiplier: skipped
            (0x70, 0x88, VirtioPciCapType.Notify, 2, 0x400, 0x100, 20),
            (0x88, 0x98, VirtioPciCapType.Isr, 2, 0x500, 1, 16),
            (0x98, 0xA8, (VirtioPciCapType)42, 2, 0x600, 1, 16),           // unknown type: ignored
            (0xA8, 0x00, VirtioPciCapType.Common, 2, 0x700, 0x38, 16));    // a later common: ignored
        BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan(0x70 + 16), 2);
        var layout = VirtioPciLayout.Parse(image);
        Assert.Equal(0x200u, layout.Common.Offset);
        Assert.Equal(0x400u, layout.Notify.Offset);
        Assert.Equal(2u, layout.NotifyOffMultiplier);
        Assert.Equal(0x500u, layout.Isr.Offset);
        Assert.Null(layout.Device);
    }

    [Fact]
    public void MissingStructuresAreReportedByName()
    {
        var noCaps = new byte[256];
        Assert.Contains("common configuration", Assert.Throws<FormatException>(() => VirtioPciLayout.Parse(noCaps)).Message);
        var noNotify = Image((0x40, 0x50, VirtioPciCapType.Common, 4, 0, 0x38, 16), (0x50, 0, VirtioPciCapType.Isr, 4, 0x1000, 1, 16));
        Assert.Contains("notification", Assert.Throws<FormatException>(() => VirtioPciLayout.Parse(noNotify)).Message);
        var shortCommon = Image((0x40, 0, VirtioPciCapType.Common, 4, 0, 0x20, 16));
        Assert.Contains("common configuration", Assert.Throws<FormatException>(() => VirtioPciLayout.Parse(shortCommon)).Message);
        Assert.Throws<FormatException>(() => VirtioPciLayout.Parse(new byte[64]));
    }

    [Fact]
    public void ALoopingCapabilityListEnds()
    {
        var image = Image((0x40, 0x50, VirtioPciCapType.Common, 4, 0, 0x38, 16), (0x50, 0x40, VirtioPciCapType.Isr, 4, 0x1000, 1, 16));
        Assert.Throws<FormatException>(() => VirtioPciLayout.Parse(image)); // no notify, but no hang either
    }
}
