using System.Buffers.Binary;
using Vfio.Devices;
using Vfio.Dma;
using Vfio.Kernel;
using Vfio.Tests.Devices;
using Vfio.Tests.Host;

namespace Vfio.Cli.Tests;

public sealed class InfoTests : IDisposable
{
    private const string Bdf = "0000:00:04.0";
    private readonly FakeSysfs _fs = new();

    public void Dispose() => _fs.Dispose();

    [Theory]
    [InlineData(1, "NUMA:   node 1")]
    [InlineData(-1, "NUMA:   no node")]
    public void The_numa_node_sysfs_reports_is_shown_in_text_and_json(int node, string line)
    {
        _fs.Device(Bdf, numaNode: node);
        using var device = new FakeDevice(DeviceBackend.KernelType1);
        using var again = new FakeDevice(DeviceBackend.KernelType1);
        var devices = new Queue<FakeDevice>([device, again]);
        var cli = new CliRunner(_fs) { OpenDevice = (_, _) => devices.Dequeue() };

        var json = Json.Parse(cli.Run("info", Bdf, "--json").AssertNoStackTrace().Out);
        var text = cli.Run("info", Bdf).AssertNoStackTrace().Out;

        var numa = json.GetProperty("numaNode");
        if (node >= 0) { Assert.Equal(node, numa.GetInt32()); }
        else { Assert.Equal(System.Text.Json.JsonValueKind.Null, numa.ValueKind); }
        Assert.Contains(line, text, StringComparison.Ordinal);
    }

    [Fact]
    public void Json_shows_mode_regions_interrupts_and_both_capability_lists()
    {
        using var device = new FakeDevice(DeviceBackend.KernelType1);
        VfioOpenOptions? seen = null;
        var cli = new CliRunner(_fs) { OpenDevice = (a, o) => { seen = o; Assert.Equal(PciAddress.Parse(Bdf), a); return device; } };

        var r = cli.Run("info", Bdf, "--json").AssertNoStackTrace();

        Assert.Equal(ExitCodes.Ok, r.ExitCode);
        Assert.False(seen!.AllowNoIommu);
        Assert.Equal(_fs.Sys, seen.SysfsRoot);
        Assert.Equal(_fs.Dev, seen.DevRoot);
        Assert.True(device.Disposed);

        var info = Json.Parse(r.Out);
        Assert.Equal(Bdf, info.GetProperty("address").GetString());
        Assert.Equal("type1", info.GetProperty("mode").GetString());
        Assert.True(info.GetProperty("dmaIsolated").GetBoolean());
        Assert.Equal("1b36", info.GetProperty("vendorId").GetString());
        Assert.Equal("0010", info.GetProperty("deviceId").GetString());
        Assert.Equal("010802", info.GetProperty("classCode").GetString());
        Assert.Equal(["pci", "reset"], info.GetProperty("flags").EnumerateArray().Select(e => e.GetString()));
        Assert.True(info.GetProperty("canReset").GetBoolean());

        var regions = info.GetProperty("regions");
        Assert.Equal(9, regions.GetArrayLength());
        var bar0 = regions[0];
        Assert.Equal("BAR0", bar0.GetProperty("name").GetString());
        Assert.Equal(16384UL, bar0.GetProperty("size").GetUInt64());
        Assert.Equal(0UL, bar0.GetProperty("offset").GetUInt64());
        Assert.Equal(["read", "write", "mmap", "caps"], bar0.GetProperty("flags").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal([(0UL, 0x3000UL)], bar0.GetProperty("sparseAreas").EnumerateArray()
            .Select(a => (a.GetProperty("offset").GetUInt64(), a.GetProperty("size").GetUInt64())));
        Assert.True(bar0.GetProperty("msixMappable").GetBoolean());
        Assert.Equal(System.Text.Json.JsonValueKind.Null, bar0.GetProperty("error").ValueKind);
        Assert.Equal(0UL, regions[1].GetProperty("size").GetUInt64());
        Assert.Equal("config", regions[7].GetProperty("name").GetString());
        Assert.Equal(0x70000000000UL, regions[7].GetProperty("offset").GetUInt64());
        Assert.Equal(System.Text.Json.JsonValueKind.Null, regions[7].GetProperty("sparseAreas").ValueKind);
        Assert.Equal("VGA", regions[8].GetProperty("name").GetString());
        Assert.Contains("Invalid argument", regions[8].GetProperty("error").GetString(), StringComparison.Ordinal);

        var irqs = info.GetProperty("irqs");
        Assert.Equal(["INTx", "MSI", "MSI-X", "ERR", "REQ"], irqs.Strings("name"));
        Assert.Equal([1, 1, 64, 1, 1], irqs.EnumerateArray().Select(q => q.GetProperty("count").GetInt32()));
        Assert.Equal(["eventfd", "maskable", "automasked"], irqs[0].GetProperty("flags").EnumerateArray().Select(e => e.GetString()));

        var caps = info.GetProperty("capabilities");
        Assert.Equal(["11", "10"], caps.Strings("id"));
        Assert.Equal(["MSI-X", "PCI Express"], caps.Strings("name"));
        Assert.Equal([0x40, 0x50], caps.EnumerateArray().Select(c => c.GetProperty("offset").GetInt32()));
        var extended = info.GetProperty("extendedCapabilities");
        Assert.Equal(["0001", "0003"], extended.Strings("id"));
        Assert.Equal(["Advanced Error Reporting", "Device Serial Number"], extended.Strings("name"));
        Assert.Equal([2, 1], extended.EnumerateArray().Select(c => c.GetProperty("version").GetInt32()));
    }

    [Fact]
    public void Table_output_shows_the_mode_and_each_section()
    {
        using var device = new FakeDevice(DeviceBackend.KernelNoIommu);
        var cli = new CliRunner(_fs) { OpenDevice = (_, _) => device };

        var r = cli.Run("info", Bdf, "--unsafe-noiommu").AssertNoStackTrace();

        Assert.Equal(ExitCodes.Ok, r.ExitCode);
        Assert.Contains("Mode:   noiommu (NO DMA isolation", r.Out, StringComparison.Ordinal);
        Assert.Matches(@"0\s+BAR0\s+16 KiB\s+0x0\s+read,write,mmap,caps,msix-mappable\s+0x0\+12 KiB", r.Out);
        Assert.Matches(@"7\s+config\s+4 KiB\s+0x70000000000\s+read,write\s+-", r.Out);
        Assert.Matches(@"8\s+VGA\s+-\s+-\s+unavailable", r.Out);
        Assert.Contains("(6 regions absent: size 0)", r.Out, StringComparison.Ordinal);
        Assert.Matches(@"2\s+MSI-X\s+64\s+eventfd,noresize", r.Out);
        Assert.Matches(@"0x040\s+11\s+MSI-X", r.Out);
        Assert.Matches(@"0x100\s+0001\s+Advanced Error Reporting \(v2\)", r.Out);
    }

    [Fact]
    public void The_aer_registers_are_decoded_with_the_spec_names_in_json_and_table()
    {
        using var device = new FakeDevice(DeviceBackend.KernelType1);
        device.SetAer(0x04, 1u << 12);                 // Poisoned TLP Received logged
        device.SetAer(0x0C, (1u << 4) | (1u << 5));    // DLP and SDN of fatal severity
        device.SetAer(0x10, 1u << 0);                  // Receiver Error logged
        device.SetAer(0x18, 12);                       // First Error Pointer
        device.SetAer(0x1C, 0x4000_0001);
        var cli = new CliRunner(_fs) { OpenDevice = (_, _) => device };

        var aer = Json.Parse(cli.Run("info", Bdf, "--json").AssertNoStackTrace().Out).GetProperty("aer");
        Assert.Equal(0x100, aer.GetProperty("offset").GetInt32());
        Assert.Equal(2, aer.GetProperty("version").GetInt32());
        Assert.Equal(["Poisoned TLP Received"], aer.GetProperty("uncorrectableStatus").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(["Data Link Protocol Error", "Surprise Down Error"], aer.GetProperty("uncorrectableFatal").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(["Receiver Error"], aer.GetProperty("correctableStatus").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(0, aer.GetProperty("correctableMask").GetArrayLength());
        Assert.Equal(12, aer.GetProperty("firstErrorPointer").GetInt32());
        Assert.Equal(["40000001", "00000000", "00000000", "00000000"], aer.GetProperty("headerLog").EnumerateArray().Select(e => e.GetString()));

        var table = cli.Run("info", Bdf).AssertNoStackTrace().Out;
        Assert.Contains("Errors: error interrupt not available: the KernelType1 backend has no error interrupt", table, StringComparison.Ordinal);
        Assert.Contains("AER:    capability 0x100 (v2), first error pointer 12", table, StringComparison.Ordinal);
        Assert.Contains("uncorrectable logged [Poisoned TLP Received], masked [none], fatal [Data Link Protocol Error, Surprise Down Error]", table, StringComparison.Ordinal);
        Assert.Contains("correctable logged [Receiver Error], masked [none]", table, StringComparison.Ordinal);
    }

    [Fact]
    public void Unsafe_noiommu_flag_is_passed_to_the_open_options()
    {
        using var device = new FakeDevice(DeviceBackend.KernelNoIommu);
        bool allowed = false;
        var cli = new CliRunner(_fs) { OpenDevice = (_, o) => { allowed = o.AllowNoIommu; return device; } };

        Assert.Equal(ExitCodes.Ok, cli.Run("info", Bdf, "--unsafe-noiommu", "--json").ExitCode);
        Assert.True(allowed);
    }

    [Fact]
    public void No_iommu_group_without_the_flag_exits_4_and_names_the_flag()
    {
        var address = PciAddress.Parse(Bdf);
        var cli = new CliRunner(_fs) { OpenDevice = (_, _) => throw new NoIommuNotPermittedException(address, "noiommu-0") };

        var r = cli.Run("info", Bdf).AssertNoStackTrace();

        Assert.Equal(ExitCodes.NoIommuRefused, r.ExitCode);
        Assert.Contains("No-IOMMU group noiommu-0", r.Err, StringComparison.Ordinal);
        Assert.Contains("--unsafe-noiommu", r.Err, StringComparison.Ordinal);
    }

    [Fact]
    public void Missing_capability_exits_3()
    {
        var address = PciAddress.Parse(Bdf);
        var cli = new CliRunner(_fs)
        {
            OpenDevice = (_, _) => throw new MissingCapabilityException("CAP_SYS_RAWIO", "open /dev/vfio/noiommu-0", address, "VFIO requires it"),
        };

        var r = cli.Run("info", Bdf, "--unsafe-noiommu").AssertNoStackTrace();

        Assert.Equal(ExitCodes.Permission, r.ExitCode);
        Assert.Contains("CAP_SYS_RAWIO", r.Err, StringComparison.Ordinal);
    }

    [Fact]
    public void The_real_opener_refuses_a_device_not_bound_to_vfio_pci()
    {
        _fs.Driver("vfio-pci").Device(Bdf, driver: "nvme", group: 3).DevNode("vfio/vfio")
            .ProcFile("self/status", "CapEff:\t000001ffffffffff\nCapPrm:\t000001ffffffffff\n");

        var r = new CliRunner(_fs).Run("info", Bdf).AssertNoStackTrace();

        Assert.Equal(ExitCodes.DeviceOrHost, r.ExitCode);
        Assert.Contains("'vfio bind 0000:00:04.0'", r.Err, StringComparison.Ordinal);
    }

    [Fact]
    public void The_real_opener_refuses_an_unknown_device()
    {
        var r = new CliRunner(_fs).Run("info", "00:1f.7").AssertNoStackTrace();

        Assert.Equal(ExitCodes.DeviceOrHost, r.ExitCode);
        Assert.Contains("no such PCI device", r.Err, StringComparison.Ordinal);
    }

    /// <summary>
    /// A device as vfio-pci describes a QEMU NVMe controller: BAR0 with a sparse mmap area around the MSI-X table,
    /// config space with MSI-X and PCI Express capabilities and an AER + DSN extended list, VGA refused with EINVAL.
    /// </summary>
    private sealed class FakeDevice : IPciDevice
    {
        private readonly byte[] _config = new byte[PciConfigSpace.ExtendedSize];

        public FakeDevice(DeviceBackend backend)
        {
            Backend = backend;
            var c = _config.AsSpan();
            BinaryPrimitives.WriteUInt16LittleEndian(c[0x00..], 0x1b36);
            BinaryPrimitives.WriteUInt16LittleEndian(c[0x02..], 0x0010);
            BinaryPrimitives.WriteUInt32LittleEndian(c[0x08..], 0x010802_02);
            BinaryPrimitives.WriteUInt16LittleEndian(c[0x06..], 1 << 4);   // status: capabilities list
            c[0x34] = 0x40;
            c[0x40] = PciCapabilityId.Msix; c[0x41] = 0x50;
            c[0x50] = PciCapabilityId.PciExpress; c[0x51] = 0x00;
            BinaryPrimitives.WriteUInt32LittleEndian(c[0x100..], 0x0001 | (2u << 16) | (0x150u << 20));
            BinaryPrimitives.WriteUInt32LittleEndian(c[0x150..], 0x0003 | (1u << 16));
            Config = new PciConfigSpace(new MemoryRegion(_config));
        }

        /// <summary>Writes a register of the AER capability at 0x100.</summary>
        public void SetAer(int register, uint value) => BinaryPrimitives.WriteUInt32LittleEndian(_config.AsSpan(0x100 + register), value);

        public bool Disposed { get; private set; }
        public PciAddress Address => PciAddress.Parse(Bdf);
        public DeviceBackend Backend { get; }
        public bool IsDmaIsolated => Backend != DeviceBackend.KernelNoIommu;
        public DeviceInfo Info => new(DeviceFlags.Pci | DeviceFlags.Reset, RegionCount: 9, IrqCount: 5);
        public PciConfigSpace Config { get; }
        public IDmaAllocator Dma => throw new NotSupportedException();

        public RegionInfo GetRegionInfo(int index) => index switch
        {
            0 => new RegionInfo
            {
                Index = 0, Size = 16384, Offset = 0,
                Flags = RegionFlags.Read | RegionFlags.Write | RegionFlags.Mmap | RegionFlags.Caps,
                SparseAreas = [new SparseArea(0, 0x3000)], MsixMappable = true,
            },
            PciRegion.Config => new RegionInfo
            {
                Index = index, Size = PciConfigSpace.ExtendedSize, Offset = (ulong)index << 40, Flags = RegionFlags.Read | RegionFlags.Write,
            },
            PciRegion.Vga => throw new VfioException("VFIO_DEVICE_GET_REGION_INFO(8)", Address, 22, null),
            _ => new RegionInfo { Index = index, Size = 0, Offset = (ulong)index << 40, Flags = RegionFlags.None },
        };

        public IrqInfo GetIrqInfo(IrqIndex index) => index switch
        {
            IrqIndex.Intx => new IrqInfo(index, IrqFlags.Eventfd | IrqFlags.Maskable | IrqFlags.AutoMasked, 1),
            IrqIndex.Msix => new IrqInfo(index, IrqFlags.Eventfd | IrqFlags.NoResize, 64),
            _ => new IrqInfo(index, IrqFlags.Eventfd | IrqFlags.NoResize, 1),
        };

        public IDeviceRegion OpenRegion(int index) => throw new NotSupportedException();
        public IInterruptSet EnableInterrupts(IrqIndex index, int count) => throw new NotSupportedException();
        public void Reset() { }
        public void Dispose() => Disposed = true;
    }
}
