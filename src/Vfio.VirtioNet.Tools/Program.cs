using System.CommandLine;
using System.Globalization;
using Vfio;
using Vfio.Host;
using Vfio.Kernel;
using Vfio.VirtioNet;
using Vfio.VirtioNet.Tools;

// vfio-net pktgen|fwd: thin command-line front ends over PacketGenerator and IoForwarder.
// Devices are bound to vfio-pci when they are not already; the second port joins the first one's VFIO
// container so one DMA address space (and one packet pool) serves both.

var unsafeNoIommu = new Option<bool>("--unsafe-noiommu") { Description = "Accept No-IOMMU mode (the device can DMA anywhere; taints the kernel)" };
var burst = new Option<int>("--burst") { Description = "Packets per burst", DefaultValueFactory = _ => 32 };
var queueSize = new Option<int>("--queue-size") { Description = "Entries per virtqueue (0: device maximum)", DefaultValueFactory = _ => 0 };

var port = new Option<string>("--port") { Description = "PCI address of the port", Required = true };
var count = new Option<long>("--count") { Description = "Frames to send", DefaultValueFactory = _ => 10_000 };
var size = new Option<int>("--size") { Description = "Frame size in bytes", DefaultValueFactory = _ => 64 };
var limit = new Option<double>("--seconds") { Description = "The most time to take (the run ends then, sent or not)", DefaultValueFactory = _ => 30 };
var pktgen = new Command("pktgen", "Send numbered test frames on one port") { port, count, size, burst, limit, queueSize, unsafeNoIommu };
pktgen.SetAction(parse =>
{
    using var device = OpenVfio(parse.GetRequiredValue(port), parse.GetValue(unsafeNoIommu), null);
    using var net = VirtioNetDevice.Open(device, new VirtioNetOptions { QueueSize = parse.GetValue(queueSize) });
    var result = PacketGenerator.Send(net, parse.GetValue(count), parse.GetValue(size), parse.GetValue(burst), maxDuration: TimeSpan.FromSeconds(parse.GetValue(limit)));
    long sent = result.Sent - result.InFlight;
    Console.WriteLine(FormattableString.Invariant($"pktgen: {sent} frames of {parse.GetValue(size)} bytes in {result.Elapsed.TotalSeconds:F2} s: {result.Mpps:F3} Mpps"));
    return sent == parse.GetValue(count) ? 0 : 2;
});

var portA = new Option<string>("--port-a") { Description = "PCI address of port A", Required = true };
var portB = new Option<string>("--port-b") { Description = "PCI address of port B", Required = true };
var seconds = new Option<double>("--seconds") { Description = "How long to forward", DefaultValueFactory = _ => 10 };
var warmup = new Option<double>("--warmup") { Description = "Seconds left out of the steady-state rate", DefaultValueFactory = _ => 1 };
var doorbell = new Option<int>("--tx-doorbell-threshold") { Description = "Packets published per transmit doorbell (1: every burst, as DPDK)", DefaultValueFactory = _ => 1 };
var idleRounds = new Option<int>("--flush-idle-rounds") { Description = "With a doorbell threshold above 1: idle rounds before held-back doorbells are rung", DefaultValueFactory = _ => 1 };
var fwd = new Command("fwd", "io-forward between two ports (testpmd --forward-mode=io --tx-first)") { portA, portB, seconds, warmup, burst, queueSize, doorbell, idleRounds, unsafeNoIommu };
fwd.SetAction(parse =>
{
    bool noIommu = parse.GetValue(unsafeNoIommu);
    using var deviceA = OpenVfio(parse.GetRequiredValue(portA), noIommu, null);
    using var deviceB = OpenVfio(parse.GetRequiredValue(portB), noIommu, deviceA);
    int qs = parse.GetValue(queueSize);
    int threshold = parse.GetValue(doorbell);
    using var netA = VirtioNetDevice.Open(deviceA, new VirtioNetOptions { QueueSize = qs, TxDoorbellThreshold = threshold });
    // Port B receives into port A's pool as well: what B receives is sent on A and freed there, like testpmd's one mempool.
    using var netB = VirtioNetDevice.Open(deviceB, new VirtioNetOptions { QueueSize = qs, Pool = netA.Pool, TxDoorbellThreshold = threshold });
    Console.WriteLine($"fwd: {netA.Device.Address} ({netA.MacAddress}) <-> {netB.Device.Address} ({netB.MacAddress}), " +
        $"rx/tx {netA.RxQueueSize}/{netA.TxQueueSize} entries, burst {parse.GetValue(burst)}, doorbell threshold {threshold}, {deviceA.Mode}");
    var r = IoForwarder.Run(netA, netB, TimeSpan.FromSeconds(parse.GetValue(seconds)), parse.GetValue(burst),
        warmup: TimeSpan.FromSeconds(parse.GetValue(warmup)), flushAfterIdleRounds: parse.GetValue(idleRounds));
    var stats = netA.Stats;
    Console.WriteLine(FormattableString.Invariant(
        $"fwd: A->B {r.AToB} B->A {r.BToA} dropped {r.Dropped} in {r.Elapsed.TotalSeconds:F2} s; {r.Rounds} rounds; kicks A {stats.Notifications} B {netB.Stats.Notifications}"));
    Console.WriteLine(FormattableString.Invariant($"fwd: {r.Mpps:F4} Mpps overall, {r.SteadyMpps:F4} Mpps after {parse.GetValue(warmup)} s warm-up"));
    Console.WriteLine(FormattableString.Invariant($"fwd-mpps={r.SteadyMpps.ToString("F4", CultureInfo.InvariantCulture)}"));
    return 0;
});

var root = new RootCommand("Packet tools on the userspace virtio-net driver") { pktgen, fwd };
return root.Parse(args).Invoke();

static VfioDevice OpenVfio(string bdf, bool allowNoIommu, VfioDevice? shareDmaWith)
{
    var address = PciAddress.Parse(bdf);
    var host = new PciHost();
    if (host.GetDevice(address).Driver != PciHost.VfioPciDriver)
    {
        host.BindToVfio(address);
    }
    var options = new VfioOpenOptions { AllowNoIommu = allowNoIommu };
    return VfioDevice.Open(address, shareDmaWith is null ? options : options.SharingDmaWith(shareDmaWith));
}
