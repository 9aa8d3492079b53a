using Vfio.Dma;
using Vfio.Nvme;

namespace Vfio.Benchmarks.Harness;

/// <summary>
/// <see cref="Workers"/> tasks, each awaiting its own <see cref="NvmeIoQueue.ReadAsync"/> in turn into its own 4 KiB
/// slot of one buffer: <see cref="Workers"/> reads in flight on one queue, <see cref="Reads"/> in all.
/// </summary>
internal static class AsyncReaders
{
    /// <summary>Tasks, so reads in flight: as many as one batch-interface round places.</summary>
    public const int Workers = RawBatch.Size;

    /// <summary>Reads each task awaits.</summary>
    public const int ReadsPerWorker = 64;

    /// <summary>Reads one <see cref="Run"/> does.</summary>
    public const int Reads = Workers * ReadsPerWorker;

    /// <summary>Starts the tasks in <paramref name="tasks"/> (length <see cref="Workers"/>) and returns when all are done.</summary>
    public static Task Run(NvmeIoQueue queue, NvmeNamespace ns, DmaBuffer buffer, Task[] tasks)
    {
        for (int w = 0; w < Workers; w++) { tasks[w] = Worker(queue, ns, buffer, w); }
        return Task.WhenAll(tasks);
    }

    private static async Task Worker(NvmeIoQueue queue, NvmeNamespace ns, DmaBuffer buffer, int slot)
    {
        ulong lba = (ulong)slot;
        for (int i = 0; i < ReadsPerWorker; i++)
        {
            await queue.ReadAsync(ns, lba, 1, buffer, (ulong)(slot * InProcessNvme.BlockBytes));
            lba = (lba + Workers) % InProcessNvme.Blocks;
        }
    }
}
