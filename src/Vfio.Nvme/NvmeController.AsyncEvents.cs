using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Vfio.Spec.Nvme;

namespace Vfio.Nvme;

/// <summary>
/// An asynchronous event the controller reported (NVMe 2.0 §5.2), with the log page that describes it, read with
/// RAE = 0 so that the controller clears the event and reports the next one of its type.
/// </summary>
public sealed record NvmeAsyncEvent
{
    /// <summary>The completion's DW0 as the controller posted it.</summary>
    public required uint Dw0 { get; init; }
    /// <summary>Event type (DW0 bits 2:0).</summary>
    public AsyncEventType Type => new AsyncEventInfo(Dw0).Type;
    /// <summary>Event information (DW0 bits 15:8); see <see cref="SmartHealthEventInfo"/> and <see cref="NoticeEventInfo"/>.</summary>
    public byte Info => new AsyncEventInfo(Dw0).Info;
    /// <summary>The log page the event points at (DW0 bits 23:16).</summary>
    public byte LogPageId => new AsyncEventInfo(Dw0).LogPage;
    /// <summary>The log page as read after the event, or null when the read failed (see <see cref="LogPageError"/>).</summary>
    public ReadOnlyMemory<byte>? LogPage { get; init; }
    /// <summary>The SMART / Health log, for <see cref="AsyncEventType.SmartHealth"/> events.</summary>
    public SmartLog? SmartLog { get; init; }
    /// <summary>The Error Information log entries, for events that point at log page 01h.</summary>
    public IReadOnlyList<ErrorLogEntry>? ErrorLog { get; init; }
    /// <summary>The Changed Namespace List, for Namespace Attribute Changed notices.</summary>
    public ChangedNamespaceList? ChangedNamespaces { get; init; }
    /// <summary>Why the log page could not be read, or null.</summary>
    public string? LogPageError { get; init; }

    /// <inheritdoc />
    public override string ToString() => $"{Type} event, info 0x{Info:x2}, log page 0x{LogPageId:x2}";
}

/// <summary>
/// Asynchronous Event Requests (NVMe 2.0 §5.2). After every enable the driver enables events with Set Features 0Bh
/// and submits <see cref="NvmeControllerOptions.AsyncEventRequests"/> AERs (at most AERL + 1) with command
/// identifiers of their own (<see cref="AsyncEventCidBase"/> and up), above the range the admin CID rotation uses.
/// <para>
/// Reaping: a background thread ("nvme aer") polls the admin completion queue every
/// <see cref="NvmeControllerOptions.AsyncEventPollInterval"/>, holding the admin lock, and is woken at once when a
/// running admin command met an AER completion on its way. Polling rather than MSI-X vector 0 keeps one path for
/// polled and interrupt-driven controllers, costs one CQ read per interval, and stops on Dispose or release without
/// an interrupt wait to cancel. For each completion it reads the event's log page with RAE = 0 (which unmasks the
/// type, §5.2.1), re-submits the AER, refreshes <see cref="Namespaces"/> on a Namespace Attribute Changed notice, and
/// then, off the admin lock, raises <see cref="AsyncEvent"/> and queues the event for <see cref="ReadAsyncEvents"/>.
/// </para>
/// </summary>
public sealed partial class NvmeController
{
    /// <summary>The first command identifier reserved for Asynchronous Event Requests.</summary>
    public const ushort AsyncEventCidBase = 0xF000;

    /// <summary>Most AERs the driver keeps outstanding.</summary>
    public const int MaxAsyncEventRequests = 16;

    // Guarded by the admin lock.
    private readonly bool[] _aerOutstanding = new bool[MaxAsyncEventRequests];
    private readonly Queue<NvmeCompletion> _aerCompleted = new();
    private int _aerCount;

    private readonly AutoResetEvent _aerWake = new(false);
    private Thread? _aerThread;
    private volatile bool _aerStop;
    private Channel<object>? _aerChannel;

    /// <summary>
    /// Raised on the reaper thread, off the admin lock, for every asynchronous event once its log page was read and
    /// the AER re-submitted. A handler that throws is logged and does not stop the reaper.
    /// </summary>
    public event EventHandler<NvmeAsyncEvent>? AsyncEvent;

    /// <summary>Asynchronous Event Requests outstanding in the controller now.</summary>
    public int OutstandingAsyncEventRequests
    {
        get { lock (_adminLock) { return _aerOutstanding.Count(static o => o); } }
    }

    /// <summary>
    /// The events, as they come (each event goes to one reader). The buffer holds
    /// <see cref="NvmeControllerOptions.AsyncEventBufferSize"/> events; when full the oldest is dropped with a logged
    /// warning. The sequence ends when the controller is disposed or released; a protocol violation seen while reaping
    /// (e.g. an AER identifier completed twice) is thrown from it, and the controller is then faulted until
    /// <see cref="Reset"/> (a new enumeration continues after that).
    /// </summary>
    public async IAsyncEnumerable<NvmeAsyncEvent> ReadAsyncEvents([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var reader = AsyncEventChannel.Reader;
        while (await reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
        {
            while (reader.TryRead(out var item))
            {
                if (item is Exception fault) { throw fault; }
                yield return (NvmeAsyncEvent)item;
            }
        }
    }

    private Channel<object> AsyncEventChannel
    {
        get
        {
            if (_aerChannel is { } c) { return c; }
            var created = Channel.CreateBounded<object>(
                new BoundedChannelOptions(Math.Max(1, _options.AsyncEventBufferSize)) { FullMode = BoundedChannelFullMode.DropOldest },
                dropped => LogAsyncEventDropped(_logger, _device.Address, dropped.ToString() ?? ""));
            return Interlocked.CompareExchange(ref _aerChannel, created, null) ?? created;
        }
    }

    internal static void ValidateAsyncEventOptions(NvmeControllerOptions options)
    {
        if (options.AsyncEventRequests is < 0 or > MaxAsyncEventRequests)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.AsyncEventRequests, $"AsyncEventRequests must be 0..{MaxAsyncEventRequests}");
        }
        if (options.AsyncEventRequests > options.AdminQueueEntries - 2)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.AsyncEventRequests, "AsyncEventRequests must leave room for one admin command (at most AdminQueueEntries - 2)");
        }
        if (options.AsyncEventPollInterval < TimeSpan.FromMilliseconds(1) || options.AsyncEventPollInterval > TimeSpan.FromMinutes(10))
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.AsyncEventPollInterval, "AsyncEventPollInterval must be 1 ms .. 10 min");
        }
        if (options.AsyncEventBufferSize is < 1 or > 65536)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.AsyncEventBufferSize, "AsyncEventBufferSize must be 1..65536");
        }
    }

    /// <summary>
    /// At the end of every initialisation (admin lock held or not yet shared): the controller was just enabled, so no
    /// AER is outstanding (a controller reset ends them without completions, §5.2). Enables the events OAES allows
    /// and submits the AERs.
    /// </summary>
    private void ArmAsyncEvents()
    {
        Array.Clear(_aerOutstanding);
        _aerCount = Math.Min(_options.AsyncEventRequests, Identity.AsyncEventRequestLimit + 1);
        if (_aerCount == 0) { return; }
        var enabled = AsyncEventConfiguration.SmartCriticalWarnings;
        if ((Identity.OptionalAsyncEvents & (uint)AsyncEventConfiguration.NamespaceAttributeNotices) != 0) { enabled |= AsyncEventConfiguration.NamespaceAttributeNotices; }
        if ((Identity.OptionalAsyncEvents & (uint)AsyncEventConfiguration.FirmwareActivationNotices) != 0) { enabled |= AsyncEventConfiguration.FirmwareActivationNotices; }
        try
        {
            ExecuteAdminLocked(NvmeCommand.SetAsyncEventConfiguration(enabled));
        }
        catch (NvmeCommandException e)
        {
            // Error events need no enabling; the others stay off.
            LogAsyncEventProblem(_logger, _device.Address, $"Set Features 0Bh ({enabled}) refused: {e.Status}");
        }
        for (int i = 0; i < _aerCount; i++) { SubmitAsyncEventRequest(i); }
        _admin.RingSubmissions();
        if (_aerThread is null)
        {
            _aerThread = new Thread(AsyncEventReaper) { IsBackground = true, Name = "nvme aer" };
            _aerThread.Start();
        }
    }

    /// <summary>Places AER <paramref name="index"/> (not rung).</summary>
    private void SubmitAsyncEventRequest(int index)
    {
        var command = NvmeCommand.AsyncEventRequest();
        command.CommandId = (ushort)(AsyncEventCidBase + index);
        _admin.Place(command);
        _aerOutstanding[index] = true;
    }

    /// <summary>
    /// Under the admin lock, for a completion whose CID is not the one waited for: true (and the completion kept for
    /// the reaper) when it ends an outstanding AER; false otherwise, which the caller reports as a protocol violation.
    /// </summary>
    private bool TryTakeAsyncEventCompletion(in NvmeCompletion c)
    {
        int index = c.CommandId - AsyncEventCidBase;
        if (index < 0 || index >= _aerCount || !_aerOutstanding[index] || c.SubmissionQueueId != 0) { return false; }
        _aerOutstanding[index] = false;
        _aerCompleted.Enqueue(c);
        _aerWake.Set();
        return true;
    }

    private void AsyncEventReaper()
    {
        var interval = _options.AsyncEventPollInterval;
        try
        {
            while (!_aerStop)
            {
                _aerWake.WaitOne(interval);
                if (_aerStop) { return; }
                var events = new List<NvmeAsyncEvent>();
                lock (_adminLock)
                {
                    if (_disposed || _released) { return; }
                    if (_fatal) { continue; }
                    try
                    {
                        ReapAdminCompletionsLocked();
                        while (_aerCompleted.TryDequeue(out var c))
                        {
                            if (HandleAsyncEventLocked(c) is { } e) { events.Add(e); }
                        }
                    }
                    catch (DeviceProtocolViolationException e)
                    {
                        _fatal = true;
                        LogAsyncEventFault(_logger, _device.Address, e);
                        AsyncEventChannel.Writer.TryWrite(e);
                        continue;
                    }
                    catch (VfioException e)
                    {
                        // A timeout or fatal status already marked the controller faulted; Reset recovers it.
                        LogAsyncEventFault(_logger, _device.Address, e);
                        continue;
                    }
                }
                foreach (var e in events) { Publish(e); }
            }
        }
        finally
        {
            AsyncEventChannel.Writer.TryComplete();
        }
    }

    /// <summary>Under the admin lock with no command outstanding: every completion must end an outstanding AER.</summary>
    private void ReapAdminCompletionsLocked()
    {
        bool any = false;
        while (_admin.TryTake(out var c))
        {
            any = true;
            if (!TryTakeAsyncEventCompletion(c))
            {
                _admin.RingCompletions();
                throw new DeviceProtocolViolationException(_device.Address, "NVMe admin completion queue with no command outstanding",
                    $"CID {c.CommandId} (SQID {c.SubmissionQueueId}) completes no outstanding command (AER CIDs {AsyncEventCidBase}..{AsyncEventCidBase + _aerCount - 1})");
            }
        }
        if (any) { _admin.RingCompletions(); }
    }

    /// <summary>Under the admin lock: reads the event's log page with RAE = 0, re-submits the AER, refreshes namespaces.</summary>
    private NvmeAsyncEvent? HandleAsyncEventLocked(NvmeCompletion c)
    {
        int index = c.CommandId - AsyncEventCidBase;
        if (!c.Status.IsSuccess)
        {
            // Limit exceeded, not supported, aborted: that AER is not re-submitted (re-submitting would fail again).
            LogAsyncEventProblem(_logger, _device.Address, $"AER CID {c.CommandId} completed with {c.Status}; not re-submitted");
            return null;
        }
        var info = new AsyncEventInfo(c.Dw0);
        byte[]? page = null;
        string? error = null;
        int length = info.LogPage switch
        {
            (byte)LogPageId.ErrorInformation => Math.Min((Identity.ErrorLogPageEntries + 1) * ErrorLogEntry.Size, MaxAdminTransferBytes),
            (byte)LogPageId.ChangedNamespaceList => ChangedNamespaceList.Size,
            (byte)LogPageId.CommandsSupportedAndEffects => CommandEffectsLog.Size,
            _ => 512,
        };
        try
        {
            page = new byte[Math.Min(length, MaxAdminTransferBytes)];
            ReadLogPageLocked(info.LogPage, info.LogPage == (byte)LogPageId.SmartHealth ? uint.MaxValue : 0, 0, page, retainAsyncEvent: false);
        }
        catch (NvmeCommandException e)
        {
            page = null;
            error = e.Message;
            LogAsyncEventProblem(_logger, _device.Address, $"reading log page 0x{info.LogPage:x2} after {info.Type} event: {e.Status}");
        }
        // The same CID again, unless a reset in between already re-armed it.
        if (index >= 0 && index < _aerCount && !_aerOutstanding[index])
        {
            SubmitAsyncEventRequest(index);
            _admin.RingSubmissions();
        }
        SmartLog? smart = null;
        ChangedNamespaceList? changed = null;
        List<ErrorLogEntry>? errors = null;
        if (page is not null)
        {
            try
            {
                if (info.LogPage == (byte)LogPageId.SmartHealth) { smart = SmartLog.Parse(page); }
                if (info.LogPage == (byte)LogPageId.ChangedNamespaceList) { changed = ChangedNamespaceList.Parse(page); }
                if (info.LogPage == (byte)LogPageId.ErrorInformation) { errors = ErrorLogEntry.ParseLog(page, Identity.ErrorLogPageEntries + 1); }
            }
            catch (FormatException e) { error = e.Message; }
        }
        if (info.Type == AsyncEventType.Notice && info.Info == (byte)NoticeEventInfo.NamespaceAttributeChanged)
        {
            try { Namespaces = DiscoverNamespaces(); }
            catch (Exception e) when (e is NvmeException or FormatException)
            {
                LogAsyncEventProblem(_logger, _device.Address, $"rescanning namespaces after a Namespace Attribute Changed notice: {e.Message}");
            }
        }
        LogAsyncEventReceived(_logger, _device.Address, info.Type, info.Info, info.LogPage);
        return new NvmeAsyncEvent { Dw0 = c.Dw0, LogPage = page is null ? default(ReadOnlyMemory<byte>?) : new ReadOnlyMemory<byte>(page), SmartLog = smart, ErrorLog = errors, ChangedNamespaces = changed, LogPageError = error };
    }

    private void Publish(NvmeAsyncEvent e)
    {
        try { AsyncEvent?.Invoke(this, e); }
        catch (Exception ex)
        {
            LogAsyncEventHandlerFailed(_logger, _device.Address, ex);
        }
        AsyncEventChannel.Writer.TryWrite(e);
    }

    /// <summary>Stops the reaper (called before Dispose takes the admin lock) and ends <see cref="ReadAsyncEvents"/>.</summary>
    private void StopAsyncEvents()
    {
        _aerStop = true;
        _aerWake.Set();
        var thread = _aerThread;
        if (thread is not null && thread != Thread.CurrentThread && !thread.Join(TimeSpan.FromSeconds(5)))
        {
            LogAsyncEventProblem(_logger, _device.Address, "the AER reaper did not stop within 5 s");
        }
        AsyncEventChannel.Writer.TryComplete();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "{Device}: asynchronous event {Type}, info 0x{Info:x2}, log page 0x{LogPage:x2}")]
    private static partial void LogAsyncEventReceived(ILogger logger, PciAddress device, AsyncEventType type, byte info, byte logPage);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Device}: asynchronous events: {Problem}")]
    private static partial void LogAsyncEventProblem(ILogger logger, PciAddress device, string problem);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Device}: asynchronous event buffer full; dropped the oldest: {Dropped}")]
    private static partial void LogAsyncEventDropped(ILogger logger, PciAddress device, string dropped);

    [LoggerMessage(Level = LogLevel.Error, Message = "{Device}: reaping asynchronous events failed; the controller needs a reset")]
    private static partial void LogAsyncEventFault(ILogger logger, PciAddress device, Exception exception);

    [LoggerMessage(Level = LogLevel.Error, Message = "{Device}: an AsyncEvent handler threw; events go on")]
    private static partial void LogAsyncEventHandlerFailed(ILogger logger, PciAddress device, Exception exception);
}
