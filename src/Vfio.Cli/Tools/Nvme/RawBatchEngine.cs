using System.Diagnostics;
using Vfio.Dma;
using Vfio.Nvme;
using Vfio.Spec.Nvme;

namespace Vfio.Cli.Tools.Nvme;

/// <summary>
/// <c>--api raw</c>: the batch interface of <see cref="NvmeIoQueue"/> (<see cref="NvmeIoQueue.SubmitRead"/>,
/// <see cref="NvmeIoQueue.SubmitWrite"/>, <see cref="NvmeIoQueue.RingDoorbell"/>, <see cref="NvmeIoQueue.Reap"/>),
/// polled: each round reaps what completed, replaces every completion with a new command in the same buffer slot,
/// and announces them all with one SQ tail doorbell write. Latency is the time the completion was seen minus the
/// submission timestamp the queue recorded, both <see cref="Stopwatch"/> ticks (the controller's clock is
/// <see cref="TimeProvider.System"/>).
/// </summary>
/// <param name="controller">The controller, opened with at least <see cref="PerfPlan.Queues"/> I/O queues.</param>
/// <param name="dma">Where the data buffers come from (the device's allocator).</param>
/// <param name="plan">The run.</param>
internal sealed class RawBatchEngine(NvmeController controller, IDmaAllocator dma, PerfPlan plan) : IPerfEngine
{
    /// <summary>What <c>--api</c> calls this engine.</summary>
    public const string Api = "raw";

    /// <summary>How long a queue waits for a completion before the run fails as stalled (the driver's default command timeout).</summary>
    private const int StallSeconds = 10;

    private static readonly long StallTicks = StallSeconds * Stopwatch.Frequency;

    /// <inheritdoc />
    public IPerfWorker CreateWorker(int queue) => new Worker(controller, dma, plan, queue);

    /// <inheritdoc />
    public PciAddress Device => controller.Device.Address;

    private sealed class Worker : IPerfWorker
    {
        private readonly PerfPlan _plan;
        private readonly int _index;
        private readonly NvmeIoQueue _queue;

        public int QueueId => _queue.QueueId;
        private readonly DmaBuffer _buffer;
        private readonly ulong _stride;
        private readonly NvmeIoCompletion[] _completions;
        private readonly int[] _slotOfTag;
        private readonly int[] _freedSlots;

        public Worker(NvmeController controller, IDmaAllocator dma, PerfPlan plan, int index)
        {
            _plan = plan;
            _index = index;
            _queue = controller.CreateIoQueue(new NvmeIoQueueOptions { Entries = plan.QueueDepth + 1 });
            try
            {
                if (_queue.Depth < plan.QueueDepth)
                {
                    throw new InvalidOperationException($"queue {_queue.QueueId} holds {_queue.Depth} commands, fewer than the depth {plan.QueueDepth}");
                }
                // One slot per command in flight, each starting on a controller page: a command's data never shares
                // a page with another's, and PRP entries after the first are page aligned (NVMe 1.4 §4.3).
                ulong page = 1UL << controller.PageShift;
                _stride = ((ulong)plan.IoBytes + page - 1) / page * page;
                _buffer = dma.Allocate(_stride * (ulong)plan.QueueDepth,
                    new DmaAllocationOptions { Contiguous = false, Name = $"vfio nvme perf Q{_queue.QueueId}" });
            }
            catch
            {
                _queue.Dispose();
                throw;
            }
            _completions = new NvmeIoCompletion[plan.QueueDepth];
            _slotOfTag = new int[_queue.Depth];
            _freedSlots = new int[plan.QueueDepth];
            // Writes without verify carry whatever their slot holds: a pattern, not zeroes a drive might treat specially.
            for (int slot = 0; slot < plan.QueueDepth; slot++)
            {
                VerifyPattern.Fill(Slot(slot), (ulong)slot * (ulong)plan.BlocksPerIo, plan.Namespace.BlockSize, plan.Seed);
            }
        }

        public void Prefill()
        {
            var stats = new QueueStats(_plan, _index);
            Drive(IoPicker.Prefill(_plan, _index), (long)_plan.RegionUnits, PerfWindow.Never, stats, verifyWrites: true);
            if (stats.FirstError is { } error)
            {
                throw new CliException($"the write pass before the verified run failed ({stats.Errors} writes): {error}",
                    ExitCodes.DeviceOrHost, "NvmeCommand");
            }
        }

        public void Run(PerfWindow window, QueueStats stats) =>
            Drive(new IoPicker(_plan, _index), long.MaxValue, window, stats, verifyWrites: _plan.Verify);

        /// <summary>
        /// The loop: at most <paramref name="limit"/> commands, the plan's depth in flight, until the window is over;
        /// then what is still in flight is reaped (checked, not counted).
        /// </summary>
        private void Drive(IoPicker picker, long limit, PerfWindow window, QueueStats stats, bool verifyWrites)
        {
            long submitted = 0;
            for (int slot = 0; slot < _plan.QueueDepth && submitted < limit; slot++, submitted++)
            {
                Submit(ref picker, slot, verifyWrites);
            }
            _queue.RingDoorbell();

            bool counting = false, over = false;
            long lastCompletion = Stopwatch.GetTimestamp();
            while (_queue.Outstanding > 0)
            {
                int n = _queue.Reap(_completions);
                long now = Stopwatch.GetTimestamp();
                if (!counting && now >= window.Start)
                {
                    counting = true;
                    stats.OpenWindow(_queue.SubmissionDoorbellWrites, _queue.CompletionDoorbellWrites);
                }
                if (!over && window.IsOver(now))
                {
                    over = true;
                    if (counting) { stats.CloseWindow(_queue.SubmissionDoorbellWrites, _queue.CompletionDoorbellWrites); }
                }
                bool counted = counting && !over;
                // Every completion first, then the new commands: Reap has freed all n tags, and a submission may
                // reuse one whose completion this round has not looked at yet.
                for (int i = 0; i < n; i++)
                {
                    ref readonly var c = ref _completions[i];
                    int slot = _freedSlots[i] = _slotOfTag[c.Tag];
                    bool write = c.Command.Opcode == (byte)NvmOpcode.Write;
                    if (c.IsSuccess) { stats.Succeeded(write, c.Command.StartingLba, Slot(slot), now - c.SubmittedTimestamp, counted); }
                    else { stats.Failed(c.Command, c.Status); }
                }
                int placed = 0;
                for (int i = 0; i < n && !over && submitted < limit; i++, submitted++, placed++)
                {
                    Submit(ref picker, _freedSlots[i], verifyWrites);
                }
                if (placed > 0) { _queue.RingDoorbell(); }
                if (n > 0)
                {
                    lastCompletion = now;
                    if (counted) { stats.Publish(); }
                }
                else if (now - lastCompletion > StallTicks)
                {
                    throw new CliException(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                        $"queue {_queue.QueueId}: no completion for {StallSeconds} s with {_queue.Outstanding} commands in flight"),
                        ExitCodes.DeviceOrHost, "NvmeTimeout");
                }
            }
        }

        private void Submit(ref IoPicker picker, int slot, bool verifyWrites)
        {
            bool write = picker.Next(out ulong lba);
            var ns = _plan.Namespace;
            ulong offset = (ulong)slot * _stride;
            if (write && verifyWrites) { VerifyPattern.Fill(Slot(slot), lba, ns.BlockSize, _plan.Seed); }
            ushort tag = write
                ? _queue.SubmitWrite(ns, lba, _plan.BlocksPerIo, _buffer, offset)
                : _queue.SubmitRead(ns, lba, _plan.BlocksPerIo, _buffer, offset);
            _slotOfTag[tag] = slot;
        }

        private Span<byte> Slot(int slot) => _buffer.Slice((ulong)slot * _stride, _plan.IoBytes);

        public void Dispose()
        {
            // The queue first: deleting it ends the controller's use of the buffer.
            _queue.Dispose();
            _buffer.Dispose();
        }
    }
}
