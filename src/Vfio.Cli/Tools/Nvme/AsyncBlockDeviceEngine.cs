using System.Diagnostics;
using Vfio.Dma;
using Vfio.Nvme;

namespace Vfio.Cli.Tools.Nvme;

/// <summary>
/// <c>--api async</c>: the block-device API a .NET program uses (<see cref="NvmeBlockDevice.ReadAsync(ulong, Memory{byte}, CancellationToken)"/>
/// and <c>WriteAsync</c> on DMA memory from <see cref="NvmeBlockDevice.AllocateBuffer"/>, so zero-copy), one
/// block device with one polled queue per worker. The queue depth is that many <c>async</c> loops, each awaiting
/// one I/O at a time; their continuations run on the queue's completion thread, which rings the doorbell once per
/// round for every I/O the continuations submitted. Latency is the time from the round in which the call was made
/// to the round whose completions answered it (<see cref="NvmeIoQueue.CompletionTimestamp"/>), as the raw engine's is
/// from placing to reaping: neither side reads the clock once per I/O.
/// </summary>
/// <param name="controller">The controller, opened with at least <see cref="PerfPlan.Queues"/> I/O queues.</param>
/// <param name="plan">The run.</param>
internal sealed class AsyncBlockDeviceEngine(NvmeController controller, PerfPlan plan) : IPerfEngine
{
    /// <summary>What <c>--api</c> calls this engine.</summary>
    public const string Api = "async";

    private const int StallSeconds = 10;

    /// <inheritdoc />
    public IPerfWorker CreateWorker(int queue) => new Worker(controller, plan, queue);

    /// <inheritdoc />
    public PciAddress Device => controller.Device.Address;

    private sealed class Worker : IPerfWorker
    {
        private readonly PerfPlan _plan;
        private readonly int _index;
        private readonly NvmeBlockDevice _device;
        private readonly NvmeIoQueue _queue;

        public int QueueId => _queue.QueueId;
        private readonly DmaBuffer _buffer;
        private readonly int _stride;

        public Worker(NvmeController controller, PerfPlan plan, int index)
        {
            _plan = plan;
            _index = index;
            _device = NvmeBlockDevice.Open(controller, new NvmeBlockDeviceOptions
            {
                NamespaceId = plan.Namespace.Id,
                Queues = 1,
                QueueEntries = plan.QueueDepth + 1,
                CompletionMode = NvmeCompletionMode.Polled,
            });
            _queue = _device.Queues[0];
            try
            {
                if (_queue.Depth < plan.QueueDepth)
                {
                    throw new InvalidOperationException($"queue {_queue.QueueId} holds {_queue.Depth} commands, fewer than the depth {plan.QueueDepth}");
                }
                // Each loop its own page-aligned slot (NVMe 1.4 §4.3: PRP entries after the first are page aligned).
                int page = 1 << controller.PageShift;
                _stride = (plan.IoBytes + page - 1) / page * page;
                _buffer = _device.AllocateBuffer(_stride * plan.QueueDepth);
            }
            catch
            {
                _device.Dispose();
                throw;
            }
            for (int slot = 0; slot < plan.QueueDepth; slot++)
            {
                VerifyPattern.Fill(Slot(slot).Span, (ulong)slot * (ulong)plan.BlocksPerIo, plan.Namespace.BlockSize, plan.Seed);
            }
        }

        public void Prefill()
        {
            var stats = new QueueStats(_plan, _index);
            var picker = IoPicker.Prefill(_plan, _index);
            Drive(picker, (long)_plan.RegionUnits, PerfWindow.Never, stats, verifyWrites: true);
            if (stats.FirstError is { } error)
            {
                throw new CliException($"the write pass before the verified run failed ({stats.Errors} writes): {error}",
                    ExitCodes.DeviceOrHost, "NvmeCommand");
            }
        }

        public void Run(PerfWindow window, QueueStats stats) =>
            Drive(new IoPicker(_plan, _index), long.MaxValue, window, stats, verifyWrites: _plan.Verify);

        /// <summary>Shared state of one pass, used on the queue's completion thread only (but for <see cref="LastCompletion"/>).</summary>
        private sealed class Pass(IoPicker picker, long limit, PerfWindow window, QueueStats stats, bool verifyWrites)
        {
            public IoPicker Picker = picker;
            public long Submitted;
            public readonly long Limit = limit;
            public readonly PerfWindow Window = window;
            public readonly QueueStats Stats = stats;
            public readonly bool VerifyWrites = verifyWrites;
            public bool Counting, Over;
            public long LastCompletion = Stopwatch.GetTimestamp();
            public Exception? Failure;
        }

        private void Drive(IoPicker picker, long limit, PerfWindow window, QueueStats stats, bool verifyWrites)
        {
            var pass = new Pass(picker, limit, window, stats, verifyWrites);
            var all = Start(pass);
            // The runner's thread only watches: a queue that stops completing fails the run instead of hanging it.
            while (!all.Wait(TimeSpan.FromMilliseconds(200)))
            {
                if (Stopwatch.GetElapsedTime(Volatile.Read(ref pass.LastCompletion)) > TimeSpan.FromSeconds(StallSeconds))
                {
                    window.Stop();
                    throw new CliException(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                        $"queue {_queue.QueueId}: no completion for {StallSeconds} s with {_queue.Outstanding} commands in flight"),
                        ExitCodes.DeviceOrHost, "NvmeTimeout");
                }
            }
            if (all.IsFaulted) { all.GetAwaiter().GetResult(); }
            if (pass.Failure is { } failure) { throw failure; }
        }

        /// <summary>
        /// Moves onto the queue's completion thread with one Flush, then starts the depth's loops there: from then on
        /// every loop runs on that one thread, so the picker and the stats need no lock, as in the raw engine. A Flush
        /// moves no data and is neither a read nor a write, so the driver's meter counts it apart from the workload.
        /// </summary>
        private async Task Start(Pass pass)
        {
            await _device.FlushAsync().ConfigureAwait(false);
            var loops = new Task[_plan.QueueDepth];
            for (int slot = 0; slot < loops.Length; slot++) { loops[slot] = Loop(pass, slot); }
            await Task.WhenAll(loops).ConfigureAwait(false);
        }

        /// <summary>One of the depth's loops: an I/O, awaited, accounted, the next one.</summary>
        private async Task Loop(Pass pass, int slot)
        {
            var memory = Slot(slot);
            while (true)
            {
                bool write;
                ulong lba;
                if (pass.Over || pass.Submitted >= pass.Limit || pass.Failure is not null) { return; }
                pass.Submitted++;
                write = pass.Picker.Next(out lba);
                if (write && pass.VerifyWrites) { VerifyPattern.Fill(memory.Span, lba, _plan.Namespace.BlockSize, _plan.Seed); }
                // On the completion thread (see Start): the round that answered the previous I/O is when this one starts.
                long started = _queue.CompletionTimestamp;
                try
                {
                    if (write) { await _device.WriteAsync(lba, memory).ConfigureAwait(false); }
                    else { await _device.ReadAsync(lba, memory).ConfigureAwait(false); }
                    Account(pass, write, lba, memory.Span, started, failed: null);
                }
                catch (NvmeCommandException e)
                {
                    Account(pass, write, lba, default, started, failed: e);
                }
                catch (Exception e) when (e is VfioException or ObjectDisposedException)
                {
                    pass.Failure ??= e;
                    pass.Window.Stop();
                    return;
                }
            }
        }

        private void Account(Pass pass, bool write, ulong lba, ReadOnlySpan<byte> data, long started, NvmeCommandException? failed)
        {
            long now = _queue.CompletionTimestamp;
            Volatile.Write(ref pass.LastCompletion, now);
            var stats = pass.Stats;
            // Opened and closed on the completion thread, which does the queue's work: its allocations and the
            // queue's doorbells between the two are what the window measures.
            if (!pass.Counting && now >= pass.Window.Start)
            {
                pass.Counting = true;
                stats.OpenWindow(_queue.SubmissionDoorbellWrites, _queue.CompletionDoorbellWrites);
            }
            if (!pass.Over && pass.Window.IsOver(now))
            {
                pass.Over = true;
                if (pass.Counting) { stats.CloseWindow(_queue.SubmissionDoorbellWrites, _queue.CompletionDoorbellWrites); }
            }
            bool counted = pass.Counting && !pass.Over;
            if (failed is not null) { stats.Failed(failed.Command, failed.Status); }
            else { stats.Succeeded(write, lba, data, now - started, counted); }
            if (counted) { stats.Publish(); }
        }

        private Memory<byte> Slot(int slot) => _buffer.Memory.Slice(slot * _stride, _plan.IoBytes);

        public void Dispose()
        {
            // The queues first: deleting them ends the controller's use of the buffer.
            _device.Dispose();
            _buffer.Dispose();
        }
    }
}
