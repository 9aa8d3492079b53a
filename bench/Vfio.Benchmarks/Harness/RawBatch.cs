using Vfio.Dma;
using Vfio.Nvme;

namespace Vfio.Benchmarks.Harness;

/// <summary>One round of the batch interface: <see cref="Size"/> 4 KiB reads placed, one doorbell, every completion reaped.</summary>
internal static class RawBatch
{
    /// <summary>Reads per round: one SQ tail doorbell write announces them all.</summary>
    public const int Size = 32;

    /// <summary>
    /// Reads <see cref="Size"/> blocks into consecutive 4 KiB slots of <paramref name="buffer"/>, from
    /// <paramref name="lba"/> on (advanced, wrapping at the end of the namespace), and waits for all of them.
    /// </summary>
    public static void Round(NvmeIoQueue queue, NvmeNamespace ns, DmaBuffer buffer, Span<NvmeIoCompletion> completions, ref ulong lba)
    {
        for (int i = 0; i < Size; i++)
        {
            queue.SubmitRead(ns, lba, 1, buffer, (ulong)(i * InProcessNvme.BlockBytes));
            lba = lba + 1 == ns.BlockCount ? 0 : lba + 1;
        }
        queue.RingDoorbell();
        int reaped = 0, idle = 0;
        while (reaped < Size)
        {
            int n = queue.Reap(completions[reaped..Size]);
            reaped += n;
            // In process the model completes inside the doorbell write; a round that never completes is a bug, not a wait.
            if (n == 0 && ++idle > 10_000_000) { throw new TimeoutException($"queue {queue.QueueId}: {Size - reaped} reads never completed"); }
        }
        foreach (ref readonly var c in completions[..Size]) { queue.EnsureSuccess(c); }
    }
}
