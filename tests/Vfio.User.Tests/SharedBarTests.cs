using System.Buffers.Binary;
using Vfio.Devices;
using Vfio.Linux;
using Vfio.User.Protocol;
using Vfio.User.Server;

namespace Vfio.User.Tests;

/// <summary>A BAR the server shares by descriptor is mmap'd by the client: both see the same bytes.</summary>
public sealed class SharedBarTests
{
    private sealed class MemoryDevice : EmulatedPciDevice
    {
        public MemoryDevice() : base(new EmulatedConfigSpace(0x1af4, 0x1234, 0x058000, size: 4096))
        {
            Memory = new SharedMemory(64 * 1024, "test-bar2");
            SetBar(2, new EmulatedBar(Memory));
            Config.AddMsixCapability(4, tableBar: 2, tableOffset: 0x8000, pbaBar: 2, pbaOffset: 0x9000);
            SetIrqCount(IrqIndex.Msix, 4);
        }

        public SharedMemory Memory { get; }
    }

    [Fact]
    public async Task SharedBarIsMappedAndMsixVectorsAreDistinct()
    {
        var device = new MemoryDevice();
        using var harness = new Harness(device);
        using var dev = harness.Connect();
        var info = dev.GetRegionInfo(2);
        Assert.True((info.Flags & RegionFlags.Mmap) != 0);
        Assert.Equal(4096UL, dev.Config.Size);
        Assert.Equal(PciCapabilityId.Msix, Assert.Single(dev.Config.Capabilities).Id);
        using (var bar2 = dev.OpenRegion(2))
        {
            Assert.True(bar2.IsMapped(0));
            bar2.Write64(0x100, 0x1122334455667788);
            Assert.Equal(0x1122334455667788UL, BitConverter.ToUInt64(device.Memory.Span.Slice(0x100, 8)));
            device.Memory.Span[0x200] = 0x5A;
            Assert.Equal(0x5A, bar2.Read8(0x200));
        }

        using var msix = dev.EnableInterrupts(IrqIndex.Msix, 4);
        var wait = msix[2].WaitAsync(TestContext.Current.CancellationToken).AsTask();
        Assert.True(device.Context.SignalInterrupt(IrqIndex.Msix, 2));
        await wait.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
        Assert.Equal(0UL, msix[0].Poll());
        Assert.Equal(0UL, msix[3].Poll());
    }

    private sealed class MixedDevice : EmulatedPciDevice
    {
        public MixedDevice() : base(new EmulatedConfigSpace(0x1af4, 0x1235, 0x058000))
        {
            Memory = new SharedMemory(0x4000, "test-bar4");
            SetBar(4, new EmulatedBar(Memory, [new SparseArea(0, 0x2000), new SparseArea(0x3000, 0x1000)],
                (offset, data) => BinaryPrimitives.WriteUInt32LittleEndian(data, ~Register),
                (offset, data) => Register = BinaryPrimitives.ReadUInt32LittleEndian(data)));
        }

        public SharedMemory Memory { get; }

        public uint Register { get; private set; }
    }

    [Fact]
    public void PartlyMappableBarIsMappedWhereTheSparseCapabilitySaysAndMessagedElsewhere()
    {
        var device = new MixedDevice();
        using var harness = new Harness(device);
        using var dev = harness.Connect();
        var info = dev.GetRegionInfo(4);
        Assert.Equal([new SparseArea(0, 0x2000), new SparseArea(0x3000, 0x1000)], info.SparseAreas);
        using var bar4 = dev.OpenRegion(4);
        Assert.True(bar4.IsMapped(0x1FFC));
        Assert.False(bar4.IsMapped(0x2000));
        Assert.True(bar4.IsMapped(0x3000));
        bar4.Write32(0x2000, 0x0F0F_0000);                       // a register: the callback sees it
        Assert.Equal(0x0F0F_0000u, device.Register);
        Assert.Equal(0xF0F0_FFFFu, bar4.Read32(0x2000));
        bar4.Write32(0x3004, 0xCAFE);                            // memory: plain store into the shared pages
        Assert.Equal(0xCAFEu, BinaryPrimitives.ReadUInt32LittleEndian(device.Memory.Span[0x3004..]));
        Assert.Equal(0u, device.Register ^ 0x0F0F_0000u);

        // A client that offers too little room is told how much the capabilities need, and gets none.
        var body = new byte[RegionInfoMessage.Length];
        new RegionInfoMessage(32, RegionFlags.None, 4, 0, 0, 0).Write(body);
        using var reply = dev.Request(Command.DeviceGetRegionInfo, body);
        var fixedPart = RegionInfoMessage.Read(reply.Body);
        Assert.Equal(32 + 16 + 32u, fixedPart.ArgSize);
        Assert.Equal(32, reply.Body.Length);
        Assert.Equal(0u, fixedPart.CapOffset);
    }

    [Fact]
    public void ConfigSpaceMasksAndCapabilityChain()
    {
        var c = new EmulatedConfigSpace(0x8086, 0x10d3, 0x020000);
        int msi = c.AddMsiCapability(4);
        int msix = c.AddMsixCapability(8, 0, 0x1000, 0, 0x2000);
        Assert.Equal(0x40, msi);
        Assert.Equal(0x50, msix);
        Assert.Equal(0x10, c.Read16(0x06) & 0x10);
        var caps = PciConfigSpace.WalkCapabilities(true, (byte)(c.Read32(0x34) & 0xFF), o => c.Read16(o));
        Assert.Equal([PciCapabilityId.Msi, PciCapabilityId.Msix], caps.Select(x => x.Id));
        c.Write(msix + 2, [0xFF, 0xFF]);
        Assert.Equal(0xC007, c.Read16(msix + 2));              // enable and function mask set; table size read-only
        c.SetMemoryBar(0, 0x4000, is64Bit: true);
        c.Write(0x10, [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
        Assert.Equal(0xFFFF_C004u, c.Read32(0x10));
        Assert.Equal(0xFFFF_FFFFu, c.Read32(0x14));
    }
}
