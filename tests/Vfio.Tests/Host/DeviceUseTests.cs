using Vfio.Host;

namespace Vfio.Tests.Host;

/// <summary>
/// The safety rails of <see cref="PciHost.BindToVfio(PciAddress, bool)"/>: each way the host can still use a device
/// (on a fake tree laid out as the kernel lays out sysfs and procfs) refuses the bind with nothing written, and
/// force overrides it.
/// </summary>
public sealed class DeviceUseTests : IDisposable
{
    private const string Bdf = "0000:00:04.0", Other = "0000:00:05.0";
    private static readonly PciAddress Address = PciAddress.Parse(Bdf);
    private const string RouteHeader = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n";
    private readonly FakeSysfs _fs = new();
    private readonly FakeKernel _kernel;

    public DeviceUseTests()
    {
        _kernel = new FakeKernel(_fs);
        _fs.Driver("vfio-pci").Driver("nvme").Driver("e1000e")
            .Device(Bdf, driver: "nvme", group: 3)
            .BlockDevice(Bdf, "nvme0n1", "259:0", ("nvme0n1p1", "259:1"), ("nvme0n1p2", "259:2"));
    }

    public void Dispose() => _fs.Dispose();

    private PciHost Host => _fs.Host(_kernel);

    private static string Mount(string numbers, string mountPoint, string source) =>
        $"29 1 {numbers} / {mountPoint} rw,relatime shared:1 - ext4 {source} rw\n";

    private DeviceInUseException Refused()
    {
        var e = Assert.Throws<DeviceInUseException>(() => Host.BindToVfio(Address));
        Assert.Empty(_kernel.Writes);
        Assert.Equal("nvme", _fs.DriverOf(Bdf));
        Assert.Equal(Address, e.Device);
        Assert.Contains($"vfio bind --force {Bdf}", e.Message, StringComparison.Ordinal);
        Assert.Contains("force: true", e.Message, StringComparison.Ordinal);
        return e;
    }

    [Fact]
    public void A_controller_nobody_uses_is_bound()
    {
        _fs.ProcFile("self/mountinfo", Mount("8:1", "/", "/dev/sda1") + Mount("0:22", "/proc", "proc"))
            .ProcFile("swaps", "Filename\tType\tSize\tUsed\tPriority\n/dev/sda2 partition 1000 0 -2\n")
            .OpenFile(100, "bash", 0, "/dev/pts/0");

        Assert.Empty(Host.FindUses(Address));
        Host.BindToVfio(Address);

        Assert.Equal("vfio-pci", _fs.DriverOf(Bdf));
    }

    [Fact]
    public void A_mounted_partition_refuses_the_bind_and_names_the_mount_point()
    {
        _fs.ProcFile("self/mountinfo", Mount("8:1", "/", "/dev/sda1") + Mount("259:1", @"/mnt/my\040data", "/dev/nvme0n1p1"));

        var e = Refused();

        Assert.Equal([new DeviceUse(DeviceUseKind.Mounted, "nvme0n1p1", "/mnt/my data")], e.Uses);
        Assert.StartsWith($"{Bdf}: refusing to take the device from nvme: nvme0n1p1 is mounted on /mnt/my data", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_mount_whose_numbers_are_anonymous_is_matched_by_its_source()
    {
        // btrfs reports 0:N in mountinfo; the source names the block device.
        _fs.ProcFile("self/mountinfo", Mount("0:45", "/srv", Path.Combine(_fs.Dev, "nvme0n1p2")));

        Assert.Equal([new DeviceUse(DeviceUseKind.Mounted, "nvme0n1p2", "/srv")], Refused().Uses);
    }

    [Fact]
    public void A_mounted_multipath_namespace_counts_for_the_controller_under_it()
    {
        _fs.Device(Other, driver: "nvme", group: 4).MultipathNamespace(Other, "nvme1n1", "259:5")
            .ProcFile("self/mountinfo", Mount("259:5", "/mp", "/dev/nvme1n1"));

        Assert.Equal([new DeviceUse(DeviceUseKind.Mounted, "nvme1n1", "/mp")], Host.FindUses(PciAddress.Parse(Other)));
        Assert.Empty(Host.FindUses(Address));
    }

    [Fact]
    public void A_hidden_multipath_path_does_not_match_anonymous_mounts()
    {
        // The guest lab's case: the controller's hidden path nvme0c0n1 has no dev file, and / is 9p (0:21), /proc 0:22.
        _fs.Device(Other, driver: "nvme", group: 4).MultipathNamespace(Other, "nvme1n1", "259:5")
            .ProcFile("self/mountinfo", Mount("0:21", "/", "host0") + Mount("0:22", "/proc", "proc"));

        Assert.Empty(Host.FindUses(PciAddress.Parse(Other)));
    }

    [Fact]
    public void Swap_on_a_partition_refuses_the_bind()
    {
        _fs.ProcFile("swaps", $"Filename\tType\tSize\tUsed\tPriority\n{Path.Combine(_fs.Dev, "nvme0n1p2")}\tpartition\t1048572\t0\t-2\n");

        var use = Assert.Single(Refused().Uses);
        Assert.Equal(DeviceUseKind.Swap, use.Kind);
        Assert.Equal("nvme0n1p2", use.Object);
    }

    [Fact]
    public void A_device_mapper_holder_refuses_the_bind()
    {
        _fs.VirtualBlockDevice("dm-0", "253:0", FakeSysfs.BlockRelative(Bdf, "nvme0n1", "nvme0n1p1"));

        var use = Assert.Single(Refused().Uses);
        Assert.Equal(new DeviceUse(DeviceUseKind.Holder, "nvme0n1p1", "dm-0"), use);
        Assert.Contains("nvme0n1p1 is held by dm-0", use.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void A_process_with_the_namespace_open_refuses_the_bind()
    {
        _fs.OpenFile(4242, "dd", 3, Path.Combine(_fs.Dev, "nvme0n1")).OpenFile(4242, "dd", 4, Path.Combine(_fs.Dev, "nvme0n1"));

        Assert.Equal([new DeviceUse(DeviceUseKind.OpenFile, "nvme0n1", "pid 4242 (dd)")], Refused().Uses);
    }

    [Fact]
    public void A_process_with_the_controller_node_open_refuses_the_bind()
    {
        _fs.OpenFile(77, "smartd", 5, Path.Combine(_fs.Dev, "nvme0"));

        Assert.Equal([new DeviceUse(DeviceUseKind.OpenFile, "nvme0", "pid 77 (smartd)")], Refused().Uses);
    }

    [Fact]
    public void The_boot_device_comes_first_and_is_named_as_such()
    {
        _fs.ProcFile("self/mountinfo", Mount("259:2", "/", "/dev/nvme0n1p2"));

        var e = Refused();

        Assert.Equal([DeviceUseKind.BootDevice, DeviceUseKind.Mounted], e.Uses.Select(u => u.Kind));
        Assert.Contains("nvme0n1p2 holds the root filesystem (the boot device", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_root_filesystem_on_device_mapper_over_the_device_is_the_boot_device()
    {
        _fs.VirtualBlockDevice("dm-0", "253:0", FakeSysfs.BlockRelative(Bdf, "nvme0n1", "nvme0n1p2"))
            .ProcFile("self/mountinfo", Mount("253:0", "/", "/dev/mapper/vg-root"));

        var e = Refused();

        Assert.Equal(DeviceUseKind.BootDevice, e.Uses[0].Kind);
        Assert.Equal("dm-0", e.Uses[0].Object);
        Assert.Contains(new DeviceUse(DeviceUseKind.Holder, "nvme0n1p2", "dm-0"), e.Uses);
        Assert.Contains(new DeviceUse(DeviceUseKind.Mounted, "dm-0", "/"), e.Uses);
    }

    [Fact]
    public void Another_controllers_mounts_do_not_count()
    {
        _fs.Device(Other, driver: "nvme", group: 4).ProcFile("self/mountinfo", Mount("259:1", "/data", "/dev/nvme0n1p1"));

        Assert.Empty(Host.FindUses(PciAddress.Parse(Other)));
        Host.BindToVfio(PciAddress.Parse(Other));
        Assert.Equal("vfio-pci", _fs.DriverOf(Other));
    }

    [Fact]
    public void An_interface_that_is_up_with_an_ipv4_route_refuses_the_bind()
    {
        _fs.Device(Other, driver: "e1000e", group: 4).NetInterface(Other, "eth1", up: true)
            .ProcFile("net/route", RouteHeader + "eth1\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n");

        var e = Assert.Throws<DeviceInUseException>(() => Host.BindToVfio(PciAddress.Parse(Other)));

        Assert.Equal([new DeviceUse(DeviceUseKind.InterfaceUp, "eth1", "route 10.0.2.0/24")], e.Uses);
        Assert.Contains("interface eth1 is up with route 10.0.2.0/24", e.Message, StringComparison.Ordinal);
        Assert.Empty(_kernel.Writes);
    }

    [Fact]
    public void An_interface_with_a_global_ipv6_address_refuses_the_bind_but_link_local_alone_does_not()
    {
        _fs.Device(Other, driver: "e1000e", group: 4).NetInterface(Other, "eth1", up: true)
            .ProcFile("net/if_inet6", "fe80000000000000505400fffe123456 02 40 20 80     eth1\n");
        Assert.Empty(Host.FindUses(PciAddress.Parse(Other)));

        _fs.ProcFile("net/if_inet6", "fe80000000000000505400fffe123456 02 40 20 80     eth1\n" +
                                     "20010db8000000000000000000000001 02 40 00 80     eth1\n");

        Assert.Equal([new DeviceUse(DeviceUseKind.InterfaceUp, "eth1", "2001:db8::1/64")], Host.FindUses(PciAddress.Parse(Other)));
    }

    [Fact]
    public void The_default_route_gets_its_own_loud_reason()
    {
        // virtio-net puts its interface one level down, under the virtio device.
        _fs.Device(Other, driver: "e1000e", group: 4).NetInterface(Other, "eth0", up: true, between: "virtio2")
            .ProcFile("net/route", RouteHeader +
                "eth0\t00000000\t0202000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n" +
                "eth0\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n");

        var e = Assert.Throws<DeviceInUseException>(() => Host.BindToVfio(PciAddress.Parse(Other)));

        Assert.Equal([new DeviceUse(DeviceUseKind.DefaultRoute, "eth0", "via 10.0.2.2")], e.Uses);
        Assert.Contains("interface eth0 carries the host's DEFAULT ROUTE (via 10.0.2.2): taking it cuts this machine off the network",
            e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_ipv6_default_route_counts_too()
    {
        _fs.Device(Other, driver: "e1000e", group: 4).NetInterface(Other, "eth0", up: true)
            .ProcFile("net/ipv6_route",
                "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003     eth0\n" +
                "00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n");

        Assert.Equal([new DeviceUse(DeviceUseKind.DefaultRoute, "eth0", "via fe80::1")], Host.FindUses(PciAddress.Parse(Other)));
    }

    [Fact]
    public void An_interface_that_is_down_does_not_count_whatever_its_routes()
    {
        _fs.Device(Other, driver: "e1000e", group: 4).NetInterface(Other, "eth0", up: false)
            .ProcFile("net/route", RouteHeader + "eth0\t00000000\t0202000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n");

        Host.BindToVfio(PciAddress.Parse(Other));

        Assert.Equal("vfio-pci", _fs.DriverOf(Other));
    }

    [Fact]
    public void Force_takes_a_device_in_use_and_logs_each_use()
    {
        _fs.ProcFile("self/mountinfo", Mount("259:1", "/data", "/dev/nvme0n1p1"));
        var log = new ListLogger();

        new PciHost(_fs.Sys, _fs.Proc, _fs.Dev, log, _kernel).BindToVfio(Address, force: true);

        Assert.Equal("vfio-pci", _fs.DriverOf(Bdf));
        Assert.Contains(log.Entries, e => e.Level == Microsoft.Extensions.Logging.LogLevel.Warning &&
                                          e.Message.Contains("nvme0n1p1 is mounted on /data", StringComparison.Ordinal));
    }

    [Fact]
    public void A_device_without_a_driver_is_not_checked()
    {
        _fs.SetDriver(Bdf, null).ProcFile("self/mountinfo", Mount("259:1", "/data", "/dev/nvme0n1p1"));

        Host.BindToVfio(Address);

        Assert.Equal("vfio-pci", _fs.DriverOf(Bdf));
    }
}
