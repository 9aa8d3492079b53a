using System.Buffers.Binary;
using System.Diagnostics;
using Vfio.Dma;
using Vfio.Kernel;
using Vfio.Nvme;

namespace Vfio.E2E.Tests;

/// <summary>
/// Several threads, each on its own NVMe queue pair, for 30 s (type1 guest only, to keep the No-IOMMU boot short;
/// the queue code is the same): batches of stamped writes, then reads of the same blocks. Every command identifier
/// handed out comes back exactly once, no completion is stray, and every block reads back its own stamp.
/// </summary>
[Trait("lab", Lab.Type1)]
[Trait("cost", "long")]   // 6.1 guests only (lab.sh e2e)
public sealed class ConcurrencyTests
{
    private const int Batch = 16, Record = 4096;
    private const ulong RegionBytes = 16UL << 20, FirstByte = 160UL << 20;   // per thread; a range no other test writes

    [Fact]
    public void ThreadsOnTheirOwnQueuesLoseAndDuplicateNoCompletionFor30Seconds()
    {
        Lab.RequireConfig(Lab.Type1);
        using var dev = VfioDevice.Open(Lab.BoundNvme(), new VfioOpenOptions());
        using var c = NvmeController.Open(dev);
        var ns = c.GetNamespace(1);
        int threads = Math.Min(4, c.GrantedIoQueues);
        Assert.True(threads >= 2, $"the controller granted {c.GrantedIoQueues} I/O queue(s)");
        var until = Stopwatch.GetTimestamp() + Stopwatch.Frequency * 30;
        var completions = new long[threads];
        var errors = new Exception?[threads];
        var workers = Enumerable.Range(0, threads).Select(t => new Thread(() =>
        {
            try { completions[t] = Run(c, ns, t, until); }
            catch (Exception e) { errors[t] = e; }
        }) { Name = $"nvme queue worker {t}" }).ToArray();
        foreach (var w in workers) { w.Start(); }
        foreach (var w in workers) { Assert.True(w.Join(TimeSpan.FromSeconds(120))); }

        Assert.All(errors, e => Assert.Null(e));
        Assert.All(completions, n => Assert.True(n > 0));
        Lab.Report($"concurrency {Lab.Config}: {threads} queues, 30 s, {completions.Sum()} completions ({string.Join(" + ", completions)}), none lost or duplicated");
    }

    /// <summary>One thread's loop; returns how many completions it checked.</summary>
    private static long Run(NvmeController c, NvmeNamespace ns, int thread, long until)
    {
        using var q = c.CreateIoQueue();
        using var data = c.Device.Dma.Allocate(Batch * Record, new DmaAllocationOptions { Contiguous = false });
        using var back = c.Device.Dma.Allocate(Batch * Record, new DmaAllocationOptions { Contiguous = false });
        int blocks = Record / ns.BlockSize;
        ulong records = RegionBytes / Record;
        ulong firstLba = (FirstByte + (ulong)thread * RegionBytes) / (ulong)ns.BlockSize;
        var reaped = new NvmeIoCompletion[Batch];
        var outstanding = new HashSet<ushort>();
        long checkedCompletions = 0;
        for (long round = 0; Stopwatch.GetTimestamp() < until; round++)
        {
            ulong slot = (ulong)(round * Batch) % records;
            for (int i = 0; i < Batch; i++)
            {
                var stamp = data.Span.Slice(i * Record, Record);
                BinaryPrimitives.WriteInt64LittleEndian(stamp, thread);
                BinaryPrimitives.WriteInt64LittleEndian(stamp[8..], round);
                BinaryPrimitives.WriteInt64LittleEndian(stamp[16..], i);
                stamp[Record - 1] = (byte)(round + i);
            }
            checkedCompletions += SubmitAndReap(q, outstanding, reaped,
                () => { for (int i = 0; i < Batch; i++) { Assert.True(outstanding.Add(q.SubmitWrite(ns, firstLba + (slot + (ulong)i) * (ulong)blocks, blocks, data, (ulong)(i * Record)))); } });
            back.Span.Clear();
            checkedCompletions += SubmitAndReap(q, outstanding, reaped,
                () => { for (int i = 0; i < Batch; i++) { Assert.True(outstanding.Add(q.SubmitRead(ns, firstLba + (slot + (ulong)i) * (ulong)blocks, blocks, back, (ulong)(i * Record)))); } });
            Assert.True(data.Span.SequenceEqual(back.Span), $"thread {thread} round {round}: blocks read back differ from those written");
        }
        Assert.Equal(0, q.StrayCompletions);
        Assert.Equal(0, q.Outstanding);
        return checkedCompletions;
    }

    /// <summary>Submits one batch, rings once, reaps until every tag came back; a tag reaped twice or never submitted fails.</summary>
    private static int SubmitAndReap(NvmeIoQueue q, HashSet<ushort> outstanding, NvmeIoCompletion[] reaped, Action submit)
    {
        submit();
        q.RingDoorbell();
        int n = 0;
        long deadline = Stopwatch.GetTimestamp() + Stopwatch.Frequency * 30;
        while (outstanding.Count > 0)
        {
            int got = q.Reap(reaped);
            for (int i = 0; i < got; i++)
            {
                q.EnsureSuccess(reaped[i]);
                Assert.True(outstanding.Remove(reaped[i].Tag), $"tag {reaped[i].Tag} completed twice or was never submitted");
                n++;
            }
            Assert.True(Stopwatch.GetTimestamp() < deadline, $"{outstanding.Count} commands never completed");
        }
        return n;
    }
}
