using Vfio.Net;
using System.Buffers.Binary;
using Vfio.Tests.Host;
using Vfio.Tests.Linux;
using Vfio.VirtioNet;
using Vfio.VirtioNet.Tests.Emulation;

namespace Vfio.Cli.Tests;

/// <summary>
/// <c>vfio net tap|capture</c>: argument errors (exit 1, no device opened), bad input that only the host can tell
/// (a TAP name in use, a port bound to another driver, a capture file that cannot be written: one line, exit 2, the
/// port never opened), and both commands end to end on the emulated virtio-net ports. Commands that make a TAP run
/// on the thread of a network namespace of the test's own (<see cref="NetNamespace"/>).
/// </summary>
public sealed class NetTapTests : IDisposable
{
    private const string Port = "0000:00:04.0";
    private readonly FakeSysfs _fs = new();
    private readonly NetNamespace _ns = new();
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("vfio-cli-tap-");
    private int _opens;

    public void Dispose()
    {
        _ns.Dispose();
        _fs.Dispose();
        _dir.Delete(recursive: true);
    }

    private CliRunner Refusing() => new(_fs)
    {
        OpenDevice = (_, _) =>
        {
            _opens++;
            throw new InvalidOperationException("the device must not be opened");
        },
    };

    private CliResult Run(CliRunner cli, params string[] args) => _ns.Run(() => cli.Run(args)).AssertNoStackTrace();

    [Theory]
    [InlineData("net tap")]
    [InlineData("net tap --port 00:zz.0")]
    [InlineData("net tap --port 0000:00:04.0 --name a/b")]
    [InlineData("net tap --port 0000:00:04.0 --name sixteen-bytes-xx")]
    [InlineData("net tap --port 0000:00:04.0 --name tap%d")]
    [InlineData("net tap --port 0000:00:04.0 --mtu 10")]
    [InlineData("net tap --port 0000:00:04.0 --seconds 0")]
    [InlineData("net tap --port 0000:00:04.0 --burst 0")]
    [InlineData("net tap --port 0000:00:04.0 --snaplen 0")]
    [InlineData("net capture --port 0000:00:04.0")]
    [InlineData("net capture --out x.pcap")]
    [InlineData("net capture --port 0000:00:04.0 --out x.pcap --count 0")]
    [InlineData("net capture --port 0000:00:04.0 --out x.pcap --seconds -1")]
    [InlineData("net capture --port 0000:00:04.0 --out x.pcap --snaplen 300000")]
    public void Bad_arguments_are_usage_errors(string args)
    {
        var r = Run(Refusing(), args.Split(' '));
        Assert.True(r.ExitCode == ExitCodes.Usage, $"exit {r.ExitCode}: {r.Out}{r.Err}");
        Assert.StartsWith("vfio: ", r.Err, StringComparison.Ordinal);
        Assert.Equal(0, _opens);
    }

    [Fact]
    public void A_tap_name_in_use_is_one_line_exit_2_and_the_port_is_not_opened()
    {
        // lo exists in every namespace and is not a TAP.
        var r = Run(Refusing(), "net", "tap", "--port", Port, "--name", "lo");
        AssertOneLineHostError(r, "interface lo is already in use");
    }

    [Fact]
    public void A_capture_file_that_cannot_be_written_is_one_line_exit_2_and_the_port_is_not_opened()
    {
        string path = Path.Combine(_dir.FullName, "missing", "x.pcap");
        AssertOneLineHostError(Run(Refusing(), "net", "capture", "--port", Port, "--out", path), "cannot write the capture file");
        AssertOneLineHostError(Run(Refusing(), "net", "tap", "--port", Port, "--capture", path), "cannot write the capture file");
    }

    [Fact]
    public void A_port_bound_to_another_driver_is_one_line_exit_2()
    {
        _fs.Driver("vfio-pci").Device(Port, vendor: 0x1af4, device: 0x1041, driver: "virtio-pci", group: 5).DevNode("vfio/vfio")
            .ProcFile("self/status", "CapEff:\t000001ffffffffff\nCapPrm:\t000001ffffffffff\n");
        var cli = new CliRunner(_fs);
        AssertOneLineHostError(Run(cli, "net", "tap", "--port", Port), "'vfio bind 0000:00:04.0'");
        AssertOneLineHostError(Run(cli, "net", "capture", "--port", Port, "--out", Path.Combine(_dir.FullName, "y.pcap")), "'vfio bind 0000:00:04.0'");
        // The TAP made before the port was refused went away with the command.
        Assert.Contains("does not exist", _ns.Exec("ip", "link", "show", "vfio0").Output, StringComparison.Ordinal);
    }

    private void AssertOneLineHostError(CliResult r, string expected)
    {
        Assert.True(r.ExitCode == ExitCodes.DeviceOrHost, $"exit {r.ExitCode}: {r.Out}{r.Err}");
        string[] lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, r.Err);
        Assert.StartsWith("vfio: ", lines[0], StringComparison.Ordinal);
        Assert.Contains(expected, lines[0], StringComparison.Ordinal);
        Assert.Equal(0, _opens);
    }

    [Fact]
    public void Tap_json_names_the_interface_with_the_ports_mac_and_mtu()
    {
        var (a, b) = EmulatedVirtioNet.CreatePair();
        using (a)
        using (b)
        {
            string pcap = Path.Combine(_dir.FullName, "tap.pcap");
            var cli = new CliRunner(_fs) { OpenDevice = (_, _) => a };
            var r = Run(cli, "net", "tap", "--port", a.Address.ToString(), "--name", "vfiot0", "--mtu", "1400", "--seconds", "0.3",
                "--capture", pcap, "--json");
            Assert.True(r.ExitCode == ExitCodes.Ok, $"exit {r.ExitCode}: {r.Out}{r.Err}");
            var d = Json.Parse(r.Out);
            Assert.Equal(a.Address.ToString(), d.GetProperty("port").GetString());
            Assert.Equal("vfiot0", d.GetProperty("tap").GetString());
            Assert.Equal("52:54:00:00:00:01", d.GetProperty("mac").GetString());
            Assert.Equal(1400, d.GetProperty("mtu").GetInt32());
            Assert.Equal(0, d.GetProperty("toKernelDropped").GetInt64());
            var c = d.GetProperty("capture");
            Assert.Equal(pcap, c.GetProperty("file").GetString());
            // Every frame the bridge moved is in the file.
            Assert.Equal(d.GetProperty("toKernel").GetInt64() + d.GetProperty("fromKernel").GetInt64(), c.GetProperty("written").GetInt64());
            Assert.True(new FileInfo(pcap).Length >= 24);
        }
    }

    [Theory]
    [InlineData(true, "TxChecksum, RxChecksum, TcpSegmentation, TcpSegmentReceive")]
    [InlineData(false, "TxChecksum, RxChecksum")]
    public void Tap_offload_asks_the_port_for_the_offloads_its_device_offers_and_reports_them(bool deviceTso, string expected)
    {
        var (a, b) = EmulatedVirtioNet.CreatePair();
        using (a)
        using (b)
        {
            if (deviceTso)
            {
                a.OfferedFeatures |= Vfio.Spec.Virtio.VirtioFeatures.NetHostTso4 | Vfio.Spec.Virtio.VirtioFeatures.NetHostTso6
                    | Vfio.Spec.Virtio.VirtioFeatures.NetGuestTso4 | Vfio.Spec.Virtio.VirtioFeatures.NetGuestTso6;
            }
            var cli = new CliRunner(_fs) { OpenDevice = (_, _) => a };
            var r = Run(cli, "net", "tap", "--port", a.Address.ToString(), "--name", "vfiot1", "--seconds", "0.3", "--offload", "--json");
            Assert.True(r.ExitCode == ExitCodes.Ok, $"exit {r.ExitCode}: {r.Out}{r.Err}");
            var d = Json.Parse(r.Out);
            Assert.True(d.GetProperty("offload").GetBoolean());
            Assert.Equal(expected, d.GetProperty("portOffloads").GetString());
            Assert.Equal(0, d.GetProperty("fromKernelWhole").GetInt64());
            Assert.Equal(0, d.GetProperty("toKernelWhole").GetInt64());
        }
    }

    [Fact]
    public void Capture_writes_count_frames_the_peer_sent()
    {
        var (a, b) = EmulatedVirtioNet.CreatePair();
        using (a)
        using (b)
        {
            using var peer = VirtioNetDevice.Open(b);
            string pcap = Path.Combine(_dir.FullName, "c.pcap");
            var cli = new CliRunner(_fs) { OpenDevice = (_, _) => a };
            bool stop = false;
            // The peer sends until the command ends: frames sent before the driver posted its receive buffers are lost
            // on the hub, as on a wire.
            var sender = new Thread(() =>
            {
                var frame = new PacketBuffer[1];
                ulong sequence = 0;
                while (!Volatile.Read(ref stop))
                {
                    if (peer.Pool.Allocate(frame) == 1)
                    {
                        Tools.Net.TestFrames.Write(frame[0].Room, 64, sequence++, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff], Tools.Net.TestFrames.MacBytes(peer.MacAddress));
                        frame[0].Length = 64;
                        if (peer.Transmit(frame) == 0) { frame[0].Free(); }
                    }
                    Thread.Sleep(1);
                }
            });
            sender.Start();
            var r = cli.Run("net", "capture", "--port", a.Address.ToString(), "--out", pcap, "--count", "5", "--seconds", "30", "--json").AssertNoStackTrace();
            Volatile.Write(ref stop, true);
            sender.Join();
            Assert.True(r.ExitCode == ExitCodes.Ok, $"exit {r.ExitCode}: {r.Out}{r.Err}");
            var d = Json.Parse(r.Out);
            Assert.Equal(5, d.GetProperty("captured").GetInt64());
            Assert.Equal(5, d.GetProperty("written").GetInt64());
            Assert.Equal(0, d.GetProperty("dropped").GetInt64());
            byte[] file = File.ReadAllBytes(pcap);
            Assert.Equal(24 + 5 * (16 + 64), file.Length);
            for (int i = 0, at = 24; i < 5; i++, at += 16 + 64)
            {
                Assert.Equal(64u, BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(at + 8)));
                Assert.Equal(0x88B5, BinaryPrimitives.ReadUInt16BigEndian(file.AsSpan(at + 16 + 12)));
            }
        }
    }
}
