using System.CommandLine;
using System.Globalization;
using Vfio;
using Vfio.Dma;
using Vfio.Host;
using Vfio.Kernel;
using Vfio.Nvme;
using Vfio.Nvme.Benchmarks;

var device = new Argument<string>("device") { Description = "PCI address of the NVMe controller, e.g. 0000:00:06.0" };
var depth = new Option<int>("--queue-depth", "-q") { Description = "Commands in flight", DefaultValueFactory = _ => 32 };
var seconds = new Option<double>("--seconds", "-t") { Description = "Duration of the timed run", DefaultValueFactory = _ => 5 };
var nsid = new Option<uint>("--nsid") { Description = "Namespace to read", DefaultValueFactory = _ => 1 };
var bind = new Option<bool>("--bind") { Description = "Bind the device to vfio-pci first" };
var noIommu = new Option<bool>("--unsafe-noiommu") { Description = "Accept No-IOMMU mode (no DMA isolation)" };
var allocCheck = new Option<int>("--alloc-check") { Description = "Also measure managed allocation over N synchronous polled reads", DefaultValueFactory = _ => 10_000 };

var root = new RootCommand("4 KiB random reads on one NVMe queue through VFIO: IOPS and p50/p99 latency")
{
    device, depth, seconds, nsid, bind, noIommu, allocCheck,
};
root.SetAction(parse =>
{
    var address = PciAddress.Parse(parse.GetValue(device)!);
    int qd = parse.GetValue(depth);
    if (parse.GetValue(bind) && new PciHost().GetDevice(address).Driver != "vfio-pci")
    {
        new PciHost().BindToVfio(address);
    }
    using var pci = VfioDevice.Open(address, new VfioOpenOptions { AllowNoIommu = parse.GetValue(noIommu) });
    using var controller = NvmeController.Open(pci, new NvmeControllerOptions { MaxIoQueues = 1 });
    var ns = controller.GetNamespace(parse.GetValue(nsid));
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"{address}: {controller.Identity.ModelNumber} ({controller.Identity.SerialNumber}), NVMe {controller.Version}, {pci.Mode}; " +
        $"ns {ns.Id}: {ns.BlockCount} x {ns.BlockSize} B; max transfer {controller.MaxTransferBytes} B"));
    using var queue = controller.CreateIoQueue(new NvmeIoQueueOptions { Entries = Math.Max(qd + 1, 2) });
    using var buffer = pci.Dma.Allocate((ulong)qd * RandomReadBenchmark.IoBytes, new DmaAllocationOptions { Contiguous = false, Name = "perf data" });
    var result = RandomReadBenchmark.Run(queue, ns, buffer, qd, TimeSpan.FromSeconds(parse.GetValue(seconds)));
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"randread 4KiB qd={qd} t={result.Elapsed.TotalSeconds:F1}s ios={result.Ios} iops={result.Iops:F0} p50_us={result.P50Microseconds:F1} p99_us={result.P99Microseconds:F1} errors={result.Errors}"));
    int count = parse.GetValue(allocCheck);
    if (count > 0)
    {
        double perIo = RandomReadBenchmark.AllocatedBytesPerSyncRead(queue, ns, buffer, count);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"sync-polled reads={count} allocated_bytes_per_io={perIo:F3}"));
    }
    return result.Errors == 0 ? 0 : 1;
});
return root.Parse(args).Invoke();
