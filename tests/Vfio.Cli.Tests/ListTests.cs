using Vfio.Cli.Output;
using Vfio.Tests.Host;

namespace Vfio.Cli.Tests;

public sealed class ListTests : IDisposable
{
    // A slice of pci.ids in its real shape: comments, vendors, tab-indented devices, two-tab subsystems, and the
    // class list at the end (which is not read: its "C 01" lines must not become vendors).
    private const string PciIdsText = """
        # List of PCI ID's
        #	Version: 2024.01.01
        1af4  Red Hat, Inc.
        	1041  Virtio 1.0 network device
        		1af4 1100  QEMU Virtual Machine
        1b36  Red Hat, Inc.
        	0010  QEMU NVM Express Controller
        8086  Intel Corporation
        	10d3  82574L Gigabit Network Connection [e1000e]
        # List of known device classes, subclasses and programming interfaces
        C 01  Mass storage controller
        	08  Non-Volatile memory controller
        """;

    private readonly FakeSysfs _fs = new();
    private readonly string _pciIds;

    public ListTests()
    {
        _pciIds = Path.Combine(_fs.Root, "pci.ids");
        File.WriteAllText(_pciIds, PciIdsText);
        _fs.Driver("vfio-pci")
            .Device("0000:00:03.0", vendor: 0x8086, device: 0x10d3, classCode: 0x020000, driver: "e1000e", group: 1)
            .Group(0, noIommu: true)
            .Device("0000:00:04.0", driver: "vfio-pci", group: 0, numaNode: 0, vfioDev: "vfio0")
            .Device("0000:01:00.0", vendor: 0x1234, device: 0x5678, classCode: 0x060400);
    }

    public void Dispose() => _fs.Dispose();

    private CliRunner Cli => new(_fs) { PciIds = _pciIds };

    [Fact]
    public void Table_shows_address_ids_names_class_driver_group_and_no_iommu()
    {
        var r = Cli.Run("list").AssertNoStackTrace();

        Assert.Equal(ExitCodes.Ok, r.ExitCode);
        var lines = r.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.TrimEnd()).ToList();
        Assert.Matches(@"^BDF\s+Vendor:Device\s+Name\s+Class\s+Driver\s+Group\s+No-IOMMU$", lines[0]);
        Assert.Matches(@"^0000:00:03\.0\s+8086:10d3\s+Intel Corporation 82574L Gigabit Network Connection \[e1000e\]\s+Ethernet controller \[0200\]\s+e1000e\s+1\s+no$", lines[1]);
        Assert.Matches(@"^0000:00:04\.0\s+1b36:0010\s+Red Hat, Inc\. QEMU NVM Express Controller\s+Non-Volatile memory controller \[0108\]\s+vfio-pci\s+0\s+yes$", lines[2]);
        Assert.Matches(@"^0000:01:00\.0\s+1234:5678\s+PCI bridge \[0604\]\s+-\s+-\s+-$", lines[3]);
        Assert.Contains("No-IOMMU groups give no DMA isolation", r.Out, StringComparison.Ordinal);
    }

    [Fact]
    public void Json_has_every_field_and_parses_back()
    {
        var r = Cli.Run("list", "--json").AssertNoStackTrace();

        Assert.Equal(ExitCodes.Ok, r.ExitCode);
        var devices = Json.Parse(r.Out).GetProperty("devices");
        Assert.Equal(["0000:00:03.0", "0000:00:04.0", "0000:01:00.0"], devices.Strings("address"));

        var nvme = devices[1];
        Assert.Equal("1b36", nvme.GetProperty("vendorId").GetString());
        Assert.Equal("0010", nvme.GetProperty("deviceId").GetString());
        Assert.Equal("Red Hat, Inc.", nvme.GetProperty("vendorName").GetString());
        Assert.Equal("QEMU NVM Express Controller", nvme.GetProperty("deviceName").GetString());
        Assert.Equal("1af4", nvme.GetProperty("subsystemVendorId").GetString());
        Assert.Equal("1100", nvme.GetProperty("subsystemDeviceId").GetString());
        Assert.Equal("010802", nvme.GetProperty("classCode").GetString());
        Assert.Equal("Non-Volatile memory controller", nvme.GetProperty("className").GetString());
        Assert.Equal("02", nvme.GetProperty("revision").GetString());
        Assert.Equal("vfio-pci", nvme.GetProperty("driver").GetString());
        Assert.Equal(System.Text.Json.JsonValueKind.Null, nvme.GetProperty("driverOverride").ValueKind);
        Assert.Equal(0, nvme.GetProperty("iommuGroup").GetInt32());
        Assert.True(nvme.GetProperty("noIommu").GetBoolean());
        Assert.Equal(0, nvme.GetProperty("numaNode").GetInt32());
        Assert.Equal("vfio0", nvme.GetProperty("vfioDevice").GetString());

        var bridge = devices[2];
        Assert.Equal(System.Text.Json.JsonValueKind.Null, bridge.GetProperty("vendorName").ValueKind);
        Assert.Equal(System.Text.Json.JsonValueKind.Null, bridge.GetProperty("driver").ValueKind);
        Assert.Equal(System.Text.Json.JsonValueKind.Null, bridge.GetProperty("iommuGroup").ValueKind);
        Assert.False(bridge.GetProperty("noIommu").GetBoolean());
    }

    [Fact]
    public void Filters_select_vfio_bound_no_iommu_or_by_driver()
    {
        Assert.Equal(["0000:00:04.0"], Json.Parse(Cli.Run("list", "--vfio", "--json").Out).GetProperty("devices").Strings("address"));
        Assert.Equal(["0000:00:04.0"], Json.Parse(Cli.Run("list", "--noiommu", "--json").Out).GetProperty("devices").Strings("address"));
        Assert.Equal(["0000:00:03.0"], Json.Parse(Cli.Run("list", "--driver", "e1000e", "--json").Out).GetProperty("devices").Strings("address"));
    }

    [Fact]
    public void Without_pci_ids_there_is_no_name_column_and_names_are_null()
    {
        var cli = new CliRunner(_fs);

        var table = cli.Run("list");
        var json = Json.Parse(cli.Run("list", "--json").Out).GetProperty("devices");

        Assert.DoesNotContain("Name", table.Out.Split('\n')[0], StringComparison.Ordinal);
        Assert.All(json.EnumerateArray(), d => Assert.Equal(System.Text.Json.JsonValueKind.Null, d.GetProperty("vendorName").ValueKind));
    }

    [Fact]
    public void An_empty_tree_lists_nothing()
    {
        using var empty = new FakeSysfs();

        var r = new CliRunner(empty).Run("list");

        Assert.Equal(ExitCodes.Ok, r.ExitCode);
        Assert.Equal("No PCI devices found.", r.Out.Trim());
        Assert.Equal(0, Json.Parse(new CliRunner(empty).Run("list", "--json").Out).GetProperty("devices").GetArrayLength());
    }

    [Fact]
    public void Pci_ids_parser_reads_vendors_and_devices_only()
    {
        var vendors = PciIds.Parse(PciIdsText.Split('\n'));

        Assert.Equal([0x1af4, 0x1b36, 0x8086], vendors.Keys.Order().Select(k => (int)k));
        Assert.Equal("Virtio 1.0 network device", vendors[0x1af4].Devices[0x1041]);
        Assert.Single(vendors[0x1af4].Devices);
    }

    [Fact]
    public void Pci_ids_lookups_answer_null_for_unknown_ids_and_missing_files()
    {
        var ids = PciIds.Find([Path.Combine(_fs.Root, "missing"), _pciIds]);

        Assert.Equal(_pciIds, ids.Path);
        Assert.Equal("Intel Corporation", ids.VendorName(0x8086));
        Assert.Null(ids.VendorName(0xffff));
        Assert.Null(ids.DeviceName(0x8086, 0xffff));
        Assert.Null(PciIds.Find([Path.Combine(_fs.Root, "missing")]).VendorName(0x8086));
    }
}
