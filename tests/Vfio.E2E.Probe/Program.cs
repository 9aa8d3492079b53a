using Vfio;
using Vfio.Dma;
using Vfio.Kernel;
using Vfio.Nvme;

// Usage: Vfio.E2E.Probe open BDF [--allow-noiommu] [--dma]
//        Vfio.E2E.Probe nvme-writer BDF FIRST_BYTE
// Exit codes: 0 done, 2 usage, 3 a VfioException (its type and message are printed).
// nvme-writer writes numbered 4 KiB records (WriterRecord) from byte FIRST_BYTE of namespace 1 on, issues a Flush after every 8 and prints
// "flushed N" once records 0..N-1 are durable; it runs until killed (the crash-and-restart test kills it with -9).
if (args.Length < 2 || args[0] is not ("open" or "nvme-writer") || (args[0] == "nvme-writer" && args.Length < 3))
{
    Console.Error.WriteLine("usage: Vfio.E2E.Probe open BDF [--allow-noiommu] [--dma] | nvme-writer BDF FIRST_BYTE");
    return 2;
}
try
{
    if (args[0] == "nvme-writer")
    {
        using var nvmeDevice = VfioDevice.Open(PciAddress.Parse(args[1]), new VfioOpenOptions { AllowNoIommu = true });
        using var controller = NvmeController.Open(nvmeDevice);
        var ns = controller.GetNamespace(1);
        using var queue = controller.CreateIoQueue();
        using var record = nvmeDevice.Dma.Allocate(WriterRecord.Size);
        ulong first = ulong.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture) / (ulong)ns.BlockSize;
        int blocks = WriterRecord.Size / ns.BlockSize;
        for (int n = 0; ; n++)
        {
            WriterRecord.Fill(record.Span, n);
            queue.Write(ns, first + (ulong)(n * blocks), blocks, record);
            if (n % 8 == 7)
            {
                queue.Flush(ns);
                Console.WriteLine($"flushed {n + 1}");
                Console.Out.Flush();
            }
        }
    }
    using var dev = VfioDevice.Open(PciAddress.Parse(args[1]), new VfioOpenOptions { AllowNoIommu = args.Contains("--allow-noiommu") });
    Console.WriteLine($"opened {dev.Address} in {dev.Mode} mode");
    if (args.Contains("--dma"))
    {
        using var buffer = dev.Dma.Allocate(4096);
        Console.WriteLine($"DMA buffer at device address {buffer.DeviceAddress}");
    }
    return 0;
}
catch (VfioException e)
{
    Console.WriteLine($"{e.GetType().Name}: {e.Message}");
    return 3;
}

/// <summary>The records nvme-writer writes: 4 KiB, every byte a function of the record number and its offset.</summary>
public static class WriterRecord
{
    /// <summary>Bytes per record.</summary>
    public const int Size = 4096;

    /// <summary>Writes record <paramref name="n"/> into <paramref name="record"/>.</summary>
    public static void Fill(Span<byte> record, int n)
    {
        for (int i = 0; i < Size; i++) { record[i] = Expected(n, i); }
    }

    /// <summary>The byte at <paramref name="offset"/> of record <paramref name="n"/>.</summary>
    public static byte Expected(int n, int offset) => (byte)(n * 131 + offset * 7 + (offset >> 8) + 1);
}
