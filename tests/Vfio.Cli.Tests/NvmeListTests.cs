using System.Text.Json;
using Vfio.Kernel;
using Vfio.Nvme.Tests.Emulation;
using Vfio.Tests.Host;

namespace Vfio.Cli.Tests;

/// <summary>
/// <c>vfio nvme list</c> over a fake sysfs tree with a controller the kernel's nvme driver has (native multipath
/// layout), one bound to vfio-pci (the emulated controller, identified by this project's driver), one in a No-IOMMU
/// group, and a free one; and <c>--socket</c> on the nvme commands.
/// </summary>
// One at a time: every emulated controller is 0000:00:06.0, and perf reads its totals from the driver's meter by
// that address, so another class's I/O on the same address beside a perf run would be counted in it.
[Collection("nvme")]
public sealed class NvmeListTests : IDisposable
{
    private const string Kernel = "0000:00:04.0", Vfio = "0000:00:05.0", NoIommu = "0000:00:06.0", Free = "0000:00:07.0";
    private readonly FakeSysfs _fs = new();
    private readonly EmulatedNvme _nvme = new();
    private readonly string _dir = Directory.CreateTempSubdirectory("vfio-nvme-list-").FullName;
    private int _opens;

    public NvmeListTests()
    {
        _fs.Device(Kernel, driver: "nvme", group: 1)
            .Device(Vfio, driver: "vfio-pci", group: 2, vfioDev: "vfio0")
            .Device(NoIommu, driver: "vfio-pci", vfioDev: "vfio1")
            .SetGroup(NoIommu, 3, noIommu: true)
            .Device(Free, device: 0x0011)
            .Device("0000:00:08.0", classCode: 0x020000, driver: "e1000e");   // not NVMe: not listed
        var ctrl = Path.Combine(_fs.DeviceFolder(Kernel), "nvme", "nvme0");
        Directory.CreateDirectory(ctrl);
        File.WriteAllText(Path.Combine(ctrl, "model"), "QEMU NVMe Ctrl                          \n");
        File.WriteAllText(Path.Combine(ctrl, "serial"), "lab-0001            \n");
        File.WriteAllText(Path.Combine(ctrl, "firmware_rev"), "7.2.0   \n");
        // Native multipath: the controller's folder has the path device nvme0c0n1; the block device is /dev/nvme0n1.
        var ns = Path.Combine(ctrl, "nvme0c0n1");
        Directory.CreateDirectory(Path.Combine(ns, "queue"));
        File.WriteAllText(Path.Combine(ns, "nsid"), "1\n");
        File.WriteAllText(Path.Combine(ns, "size"), "2097152\n");              // 512-byte sectors: 1 GiB
        File.WriteAllText(Path.Combine(ns, "queue", "logical_block_size"), "4096\n");
        File.WriteAllText(Path.Combine(ns, "nuse"), "1024\n");
        Directory.CreateDirectory(Path.Combine(ctrl, "power"));                 // other folders are not namespaces
    }

    public void Dispose()
    {
        _nvme.Dispose();
        _fs.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    private CliRunner Cli() => new(_fs)
    {
        OpenDevice = (address, options) =>
        {
            _opens++;
            Assert.Equal(PciAddress.Parse(Vfio), address);   // the No-IOMMU one is not opened without consent
            Assert.False(options.AllowNoIommu);
            return _nvme;
        },
    };

    [Fact]
    public void Json_has_nvme_clis_device_fields_and_every_controller()
    {
        var r = Cli().Run("nvme", "list", "--json").AssertNoStackTrace();
        Assert.True(r.ExitCode == 0, r.Out + r.Err);
        var d = Json.Parse(r.Out);
        var devices = d.GetProperty("Devices").EnumerateArray().ToList();
        Assert.Equal(2, devices.Count);
        var k = devices[0];
        Assert.Equal(1u, k.GetProperty("NameSpace").GetUInt32());
        Assert.Equal("/dev/nvme0n1", k.GetProperty("DevicePath").GetString());
        Assert.Equal("QEMU NVMe Ctrl", k.GetProperty("ModelNumber").GetString());
        Assert.Equal("lab-0001", k.GetProperty("SerialNumber").GetString());
        Assert.Equal("7.2.0", k.GetProperty("Firmware").GetString());
        Assert.Equal(262144UL, k.GetProperty("MaximumLBA").GetUInt64());
        Assert.Equal(1UL << 30, k.GetProperty("PhysicalSize").GetUInt64());
        Assert.Equal(1024UL * 4096, k.GetProperty("UsedBytes").GetUInt64());
        Assert.Equal(4096, k.GetProperty("SectorSize").GetInt32());
        Assert.Equal("nvme", k.GetProperty("Driver").GetString());
        var v = devices[1];
        Assert.Equal(Vfio, v.GetProperty("DevicePath").GetString());
        Assert.Equal("Emulated NVMe Ctrl", v.GetProperty("ModelNumber").GetString());
        Assert.Equal("EMU-0001", v.GetProperty("SerialNumber").GetString());
        Assert.Equal(8192UL, v.GetProperty("MaximumLBA").GetUInt64());
        Assert.Equal(512, v.GetProperty("SectorSize").GetInt32());
        Assert.Equal("vfio-pci", v.GetProperty("Driver").GetString());

        var controllers = d.GetProperty("Controllers").EnumerateArray().ToDictionary(c => c.GetProperty("Address").GetString()!);
        Assert.Equal([Kernel, Vfio, NoIommu, Free], controllers.Keys.Order(StringComparer.Ordinal));
        Assert.Equal("nvme0", controllers[Kernel].GetProperty("Controller").GetString());
        Assert.Equal(1, controllers[Vfio].GetProperty("Namespaces").GetInt32());
        Assert.Equal(8192UL * 512, controllers[Vfio].GetProperty("CapacityBytes").GetUInt64());
        Assert.Contains("--unsafe-noiommu", controllers[NoIommu].GetProperty("Note").GetString(), StringComparison.Ordinal);
        Assert.Equal(JsonValueKind.Null, controllers[Free].GetProperty("Driver").ValueKind);
        Assert.Contains("no driver", controllers[Free].GetProperty("Note").GetString(), StringComparison.Ordinal);
        Assert.Equal(1, _opens);
        Assert.Equal(0, _nvme.Allocator!.LiveBuffers);
    }

    [Fact]
    public void Table_shows_each_namespace_with_its_driver()
    {
        var r = Cli().Run("nvme", "list").AssertNoStackTrace();
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("/dev/nvme0n1", r.Out, StringComparison.Ordinal);
        Assert.Contains("1.07 GB", r.Out, StringComparison.Ordinal);
        Assert.Contains("vfio-pci", r.Out, StringComparison.Ordinal);
        Assert.Contains("Emulated NVMe Ctrl", r.Out, StringComparison.Ordinal);
        Assert.Contains(Free, r.Out, StringComparison.Ordinal);
    }

    [Fact]
    public void A_controller_that_cannot_be_opened_is_listed_with_the_reason()
    {
        var cli = new CliRunner(_fs) { OpenDevice = (a, _) => throw new VfioException("open", a, 16, "another process has it") };
        var r = cli.Run("nvme", "list", "--json").AssertNoStackTrace();
        Assert.Equal(0, r.ExitCode);
        var c = Json.Parse(r.Out).GetProperty("Controllers").EnumerateArray().Single(c => c.GetProperty("Address").GetString() == Vfio);
        Assert.StartsWith("not identified:", c.GetProperty("Note").GetString(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("nvme", "identify")]
    [InlineData("nvme", "read", "--lba", "0")]
    public void A_command_needs_exactly_one_way_to_name_the_controller(params string[] args)
    {
        var neither = new CliRunner(_fs).Run(args).AssertNoStackTrace();
        Assert.Equal(ExitCodes.Usage, neither.ExitCode);
        Assert.Contains("--socket PATH", neither.Err, StringComparison.Ordinal);
        var both = new CliRunner(_fs).Run([.. args, Vfio, "--socket", Path.Combine(_dir, "x.sock")]).AssertNoStackTrace();
        Assert.Equal(ExitCodes.Usage, both.ExitCode);
        Assert.Contains("not both", both.Err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Socket_option_reaches_a_vfio_user_target()
    {
        string socket = Path.Combine(_dir, "nvme.sock");
        var serve = Task.Run(() => new CliRunner(_fs).Run("serve", "nvme", "--socket", socket, "--size-mb", "4", "--once"), TestContext.Current.CancellationToken);
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!File.Exists(socket) && DateTime.UtcNow < deadline) { await Task.Delay(20, TestContext.Current.CancellationToken); }
        var r = new CliRunner(_fs).Run("nvme", "identify", "--socket", socket, "--json").AssertNoStackTrace();
        Assert.True(r.ExitCode == 0, r.Out + r.Err);
        var d = Json.Parse(r.Out);
        Assert.Equal(socket, d.GetProperty("address").GetString());
        Assert.Equal(4UL << 20 >> 9, d.GetProperty("namespaces")[0].GetProperty("blocks").GetUInt64());
        var served = await serve.WaitAsync(TimeSpan.FromSeconds(20), TestContext.Current.CancellationToken);
        Assert.Equal(0, served.ExitCode);
    }

    [Fact]
    public void Socket_that_nobody_serves_is_one_clear_line()
    {
        var r = new CliRunner(_fs).Run("nvme", "identify", "--socket", Path.Combine(_dir, "none.sock")).AssertNoStackTrace();
        Assert.Equal(ExitCodes.DeviceOrHost, r.ExitCode);
        Assert.Contains("vfio serve nvme", r.Err, StringComparison.Ordinal);
    }
}
