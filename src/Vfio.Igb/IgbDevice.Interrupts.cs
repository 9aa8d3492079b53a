using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Vfio.Devices;
using Vfio.Net;

namespace Vfio.Igb;

// MSI-X completion (IgbOptions.CompletionMode Interrupt or Hybrid), 82576 datasheet §7.3 "Interrupts" in MSI-X mode:
// GPIE.Multiple_MSIX routes each cause through IVAR to a vector, EICR carries one bit per vector. Vector q serves
// queue pair q (its receive and its transmit write-backs), vector QueuePairs the "other" causes (link status change).
// Every vector auto-clears its EICR bit (EIAC) and auto-masks itself (EIAM with GPIE.EIAME) when its message goes
// out, so a consumer re-arms it with an EIMS write before it sleeps. An interrupt only wakes a consumer: what it
// then takes is what Receive reads and checks in the descriptors, as in polling mode.
public sealed partial class IgbDevice
{
    private IInterruptSet? _msix;
    private long _interruptWakeups;
    private long _linkChanges;

    /// <summary>How the queues' consumers wait (<see cref="IgbOptions.CompletionMode"/>).</summary>
    public IgbCompletionMode CompletionMode => _options.CompletionMode;

    /// <summary>Times a wait (<see cref="WaitForReceive"/>, <see cref="WaitForReceiveAsync"/>) woke on its vector's signal.</summary>
    public long InterruptWakeups => Interlocked.Read(ref _interruptWakeups);

    /// <summary>Link status change interrupts seen on the "other" vector since the port was opened.</summary>
    public long LinkChanges => Interlocked.Read(ref _linkChanges);

    /// <summary>
    /// Raised, in the interrupt modes only, when the device reports a link status change (ICR.LSC on the "other"
    /// MSI-X vector), with the link as STATUS reads right after it. Runs on a thread-pool thread; an exception it
    /// throws is logged and dropped. <see cref="IsLinkUp"/> reads STATUS itself and needs no interrupt.
    /// </summary>
    public event EventHandler<NetLinkState>? LinkChanged;

    /// <summary>
    /// Blocks until receive queue <paramref name="queuePair"/> holds a written-back descriptor, or
    /// <paramref name="timeout"/> (<see cref="Timeout.InfiniteTimeSpan"/>: none) passes; true when there is one to
    /// <see cref="Receive(Span{PacketBuffer}, int)"/>. In <see cref="IgbCompletionMode.Hybrid"/> it first polls the
    /// ring <see cref="IgbOptions.HybridSpinPolls"/> times. Then it re-arms the queue pair's vector (EIMS), looks once
    /// more, and sleeps on the vector's eventfd; a signal with nothing in the ring (a transmit write-back shares the
    /// vector, or a stale or spurious interrupt) sends it back to sleep. Returns false at once when the port is reset
    /// meanwhile. The caller is the queue's own thread, as for <c>Receive</c>.
    /// </summary>
    /// <exception cref="InvalidOperationException">The port polls (<see cref="IgbCompletionMode.Polled"/>).</exception>
    /// <exception cref="ArgumentOutOfRangeException">No such queue pair, or a negative timeout other than infinite.</exception>
    /// <exception cref="IgbQueueFaultedException">The queue broke the descriptor protocol earlier.</exception>
    /// <exception cref="ObjectDisposedException">The port was closed, before or during the wait.</exception>
    /// <exception cref="DeviceReleasedException">The host took the device back.</exception>
    public bool WaitForReceive(int queuePair, TimeSpan timeout)
    {
        CheckWait(queuePair);
        if (timeout < TimeSpan.Zero && timeout != Timeout.InfiniteTimeSpan)
        {
            throw new ArgumentOutOfRangeException(nameof(timeout), timeout, "a wait lasts zero or more, or Timeout.InfiniteTimeSpan");
        }
        if (SpinForReceive(queuePair)) { return true; }
        long start = Stopwatch.GetTimestamp();
        while (true)
        {
            if (ReadyOrArmed(queuePair, out var vector)) { return true; }
            TimeSpan left = timeout == Timeout.InfiniteTimeSpan ? Timeout.InfiniteTimeSpan : timeout - Stopwatch.GetElapsedTime(start);
            if (left != Timeout.InfiniteTimeSpan && left <= TimeSpan.Zero) { return false; }
            try
            {
                if (vector!.Wait(left) > 0) { Interlocked.Increment(ref _interruptWakeups); }
            }
            catch (ObjectDisposedException)
            {
                return AfterVectorsReleased();
            }
        }
    }

    /// <summary>
    /// As <see cref="WaitForReceive"/> without blocking a thread and without a timeout: completes with true once
    /// receive queue <paramref name="queuePair"/> holds a written-back descriptor, with false when the port is
    /// reset meanwhile.
    /// </summary>
    /// <exception cref="InvalidOperationException">The port polls (<see cref="IgbCompletionMode.Polled"/>).</exception>
    /// <exception cref="ArgumentOutOfRangeException">No such queue pair.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while waiting.</exception>
    /// <exception cref="IgbQueueFaultedException">The queue broke the descriptor protocol earlier.</exception>
    /// <exception cref="ObjectDisposedException">The port was closed, before or during the wait.</exception>
    /// <exception cref="DeviceReleasedException">The host took the device back.</exception>
    public async ValueTask<bool> WaitForReceiveAsync(int queuePair, CancellationToken cancellationToken = default)
    {
        CheckWait(queuePair);
        if (SpinForReceive(queuePair)) { return true; }
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (ReadyOrArmed(queuePair, out var vector)) { return true; }
            try
            {
                if (await vector!.WaitAsync(cancellationToken).ConfigureAwait(false) > 0) { Interlocked.Increment(ref _interruptWakeups); }
            }
            catch (ObjectDisposedException)
            {
                return AfterVectorsReleased();
            }
        }
    }

    private void CheckWait(int queuePair)
    {
        if (_options.CompletionMode == IgbCompletionMode.Polled)
        {
            throw new InvalidOperationException($"{Device.Address}: waiting for a queue needs IgbOptions.CompletionMode Interrupt or Hybrid; the port polls");
        }
        ThrowIfStopped();
        ArgumentOutOfRangeException.ThrowIfNegative(queuePair);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(queuePair, QueuePairCount);
    }

    /// <summary>The hybrid mode's first phase: a few looks at the ring before paying for an interrupt.</summary>
    private bool SpinForReceive(int queuePair)
    {
        if (_options.CompletionMode != IgbCompletionMode.Hybrid) { return false; }
        for (int i = 0; i < _options.HybridSpinPolls; i++)
        {
            Enter();
            try
            {
                var ring = (RxRing)_rx[queuePair].Ring;
                ring.ThrowIfFaulted();
                if (ring.WriteBackPending) { return true; }
            }
            finally
            {
                Leave();
            }
            Thread.SpinWait(32);
        }
        return false;
    }

    /// <summary>
    /// True when the ring holds a write-back; otherwise re-arms the queue pair's vector, and returns whether one
    /// arrived meanwhile, with the vector to sleep on in <paramref name="vector"/>.
    /// </summary>
    private bool ReadyOrArmed(int queuePair, out IInterruptVector? vector)
    {
        vector = null;
        Enter();
        try
        {
            var ring = (RxRing)_rx[queuePair].Ring;
            ring.ThrowIfFaulted();
            if (ring.WriteBackPending) { return true; }
            // Enter succeeded, so the port runs and its vectors are enabled (they are released only while stopping).
            vector = _msix![queuePair];
            // Signals left from write-backs already taken would wake the sleep below for nothing. Dropping them is
            // safe: the device writes a descriptor back before it sends the message, so what a dropped signal
            // announced is visible to the look below.
            vector.Poll();
            // EIAM masked the vector when its last message went out (GPIE.EIAME); unmask it. A cause latched in
            // EICR while it was masked sends the message at once.
            Bar.Write32(IgbReg.Eims, 1u << queuePair);
            // The EIMS store before the second look at the ring: a write-back that landed after the first look,
            // while the vector was masked, either shows now or raises the message the sleep waits for.
            Interlocked.MemoryBarrier();
            return ring.WriteBackPending;
        }
        finally
        {
            Leave();
        }
    }

    /// <summary>A wait's vector was released under it: reset (false: look again), or close or release (throw).</summary>
    private bool AfterVectorsReleased()
    {
        if (Volatile.Read(ref _disposed) || Volatile.Read(ref _released)) { ThrowStopped(); }
        return false;
    }

    /// <summary>The checks of the interrupt options <see cref="Open"/> makes before it touches the device.</summary>
    private static void ValidateInterruptOptions(IPciDevice device, IgbOptions options)
    {
        if (!Enum.IsDefined(options.CompletionMode))
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.CompletionMode, "unknown IgbCompletionMode");
        }
        if (options.CompletionMode == IgbCompletionMode.Polled) { return; }
        if (options.InterruptThrottle < TimeSpan.Zero || options.InterruptThrottle > TimeSpan.FromMicroseconds(IgbEitr.MaxIntervalMicroseconds))
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.InterruptThrottle,
                $"InterruptThrottle must be 0 to {IgbEitr.MaxIntervalMicroseconds} µs (EITR interval, bits 14:2)");
        }
        ArgumentOutOfRangeException.ThrowIfNegative(options.HybridSpinPolls, nameof(options.HybridSpinPolls));
        int required = options.QueuePairs + 1;
        int available = device.GetIrqInfo(IrqIndex.Msix).Count;
        if (available < required) { throw new IgbInterruptVectorsException(device.Address, required, available); }
    }

    /// <summary>
    /// §7.3 MSI-X mode, programmed after the global reset cleared it and once the rings run: the vectors in VFIO
    /// first (the messages need eventfds behind them), then GPIE, the allocation of every cause to its vector (IVAR,
    /// IVAR_MISC), moderation (EITR), auto-clear and auto-mask (EIAC, EIAM), the link cause (IMS.LSC) and last the
    /// vectors unmasked (EIMS). QEMU's igb honours EIAC only once GPIE.Multiple_MSIX is set, hence GPIE first.
    /// </summary>
    private void SetUpInterrupts(int pairs)
    {
        if (_options.CompletionMode == IgbCompletionMode.Polled) { return; }
        ReleaseInterrupts();
        var set = Device.EnableInterrupts(IrqIndex.Msix, pairs + 1);
        _msix = set;
        var bar = Bar;
        uint other = 1u << pairs;
        uint all = (other << 1) - 1;
        bar.Write32(IgbReg.Gpie, IgbGpie.NonSelectiveClearOnRead | IgbGpie.MultipleMsix | IgbGpie.AutoMaskEnable | IgbGpie.PbaSupport);
        Span<uint> ivar = stackalloc uint[8];
        for (int q = 0; q < pairs; q++)
        {
            uint entry = (uint)q | IgbIvar.Valid;
            var (rxRegister, rxShift) = IgbIvar.Entry(q, receive: true);
            var (txRegister, txShift) = IgbIvar.Entry(q, receive: false);
            ivar[rxRegister] |= entry << rxShift;
            ivar[txRegister] |= entry << txShift;
        }
        for (int n = 0; n < ivar.Length; n++) { bar.Write32(IgbReg.Ivar(n), ivar[n]); }
        bar.Write32(IgbReg.IvarMisc, ((uint)pairs | IgbIvar.Valid) << IgbIvar.MiscOtherShift);
        uint interval = (uint)(_options.InterruptThrottle.Ticks / TimeSpan.TicksPerMicrosecond) << IgbEitr.IntervalShift;
        for (int q = 0; q < pairs; q++) { bar.Write32(IgbReg.Eitr(q), interval); }
        bar.Write32(IgbReg.Eitr(pairs), 0);   // link changes are rare: never held back
        bar.Write32(IgbReg.Eiac, all);
        bar.Write32(IgbReg.Eiam, all);
        bar.Write32(IgbReg.Ims, IgbIcr.LinkStatusChange);
        bar.Write32(IgbReg.Eims, all);
        _ = WatchOtherCausesAsync(set, set[pairs], other);
    }

    /// <summary>MSI-X off in VFIO and the eventfds closed: sleeping waits end with <see cref="ObjectDisposedException"/>.</summary>
    private void ReleaseInterrupts() => Interlocked.Exchange(ref _msix, null)?.Dispose();

    /// <summary>
    /// Services the "other" vector until the vectors are released: reads ICR (GPIE.NSICR: the read clears it, so the
    /// next change raises the vector again), reports a link status change, re-arms the vector. It starts while
    /// <see cref="Reset"/> still holds the port stopped, and a change latched during the bring-up (auto-negotiation
    /// sets ICR.LSC) fires as soon as IMS.LSC is written: it waits for the reset to finish rather than leave.
    /// </summary>
    private async Task WatchOtherCausesAsync(IInterruptSet set, IInterruptVector vector, uint bit)
    {
        while (true)
        {
            try
            {
                await vector.WaitAsync().ConfigureAwait(false);
            }
            catch (ObjectDisposedException)
            {
                return;   // reset, close or release: a new watcher comes with the next vectors
            }
            while (!TryEnter())
            {
                if (Volatile.Read(ref _disposed) || Volatile.Read(ref _released) || !ReferenceEquals(Volatile.Read(ref _msix), set)) { return; }
                await Task.Delay(1).ConfigureAwait(false);
            }
            NetLinkState? link = null;
            try
            {
                var bar = Bar;
                if ((bar.Read32(IgbReg.Icr) & IgbIcr.LinkStatusChange) != 0)
                {
                    link = ReadLinkState();
                    Interlocked.Increment(ref _linkChanges);
                }
                bar.Write32(IgbReg.Eims, bit);
            }
            catch (Exception e) when (e is VfioException or IOException or ObjectDisposedException)
            {
                LogTeardownProblem(_logger, Device.Address, e.Message);
                return;
            }
            finally
            {
                Leave();
            }
            if (link is { } state)
            {
                LogLinkChanged(_logger, Device.Address, state.IsUp, state.SpeedMbps ?? 0);
                try
                {
                    LinkChanged?.Invoke(this, state);
                }
                catch (Exception e)
                {
                    LogLinkHandlerFailed(_logger, Device.Address, e);
                }
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "{Device}: link status change: up {LinkUp} at {Speed} Mb/s")]
    private static partial void LogLinkChanged(ILogger logger, PciAddress device, bool linkUp, int speed);

    [LoggerMessage(Level = LogLevel.Error, Message = "{Device}: a LinkChanged handler threw")]
    private static partial void LogLinkHandlerFailed(ILogger logger, PciAddress device, Exception exception);
}
