using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using Vfio.Devices;
using Vfio.Dma;
using Vfio.Spec.Nvme;
using Vfio.User.Server;

namespace Vfio.Emulation.Nvme;

/// <summary>
/// An NVMe controller (NVMe base specification 1.4) emulated on the vfio-user server library, with one namespace
/// held in memory: controller registers and doorbells in BAR0, MSI-X (table in BAR4), the admin queue, Identify,
/// Set Features (Number of Queues), creation and deletion of I/O queues, and Read, Write, Flush, Write Zeroes and
/// Dataset Management (deallocate) per ONCS. Commands run inside the doorbell write, or on a worker thread when
/// <see cref="ProcessOnWorkerThread"/> is set; every completion signals the queue's MSI-X vector when the host wired it.
/// <para>
/// A host's mistakes never take the model down: a malformed command completes with an NVMe error status (invalid
/// queue identifiers, PRPs into memory the host did not map, LBAs out of range, transfers over MDTS); register
/// misuse is ignored or, where a real controller would fail (a queue it cannot fetch from, an enable with settings
/// it does not support), sets CSTS.CFS. Each such case raises <see cref="ProtocolViolation"/>, which driver tests
/// use to fail on behaviour a lenient device would let pass.
/// </para>
/// <para>
/// Locking: one lock guards the registers, the admin queue and the shape of the queue tables (creation, deletion,
/// resets); each I/O submission queue and each completion queue has its own besides, so commands of different
/// queue pairs run at the same time, as the queues of a real controller are fetched and processed independently
/// (NVMe 1.4 "Command Arbitration" leaves the order between submission queues to the controller). Order: the
/// controller lock, then a submission queue's, then a completion queue's; the I/O path never takes the first.
/// </para>
/// </summary>
public sealed partial class NvmeDevice : EmulatedPciDevice, IDisposable
{
    /// <summary>Size of BAR0: registers, then doorbells from 0x1000.</summary>
    public const int Bar0Size = 0x4000;

    /// <summary>BAR holding the MSI-X table (at 0) and pending-bit array (at <see cref="MsixPbaOffset"/>).</summary>
    public const int MsixBar = 4;

    /// <summary>Offset of the MSI-X pending-bit array in <see cref="MsixBar"/>.</summary>
    public const uint MsixPbaOffset = 0x800;

    private const int MsixBarSize = 0x1000;
    private const ulong Page = 4096;

    private readonly NvmeDeviceOptions _options;
    private readonly Lock _lock = new();
    private readonly Lock[] _sqLocks;
    private readonly Lock[] _cqLocks;
    private readonly Lock _workerLock = new();
    private readonly Lock _faultLock = new();
    private NvmeStatus? _failNextIo;
    private volatile bool _failNextArmed;
    private int _maxPrpListEntries;
    private readonly SubmissionState[] _sqs;
    private readonly CompletionState[] _cqs;
    private readonly QueueCounters[] _counters;
    private readonly long[] _interrupts;
    private uint _cc, _csts, _aqa;
    private ulong _asq, _acq;
    private int _grantedQueues;
    private bool _queuesConfigured;
    private Thread? _worker;
    private volatile bool _stopWorker;

    /// <summary>
    /// Called (under the controller lock) when a namespace is created, deleted, attached, detached or formatted: the
    /// Changed Namespace List log (04h) records it and a Namespace Attribute Changed notice is raised when enabled
    /// (§5.14.1.4, §5.2).
    /// </summary>
    partial void OnNamespaceAttributeChanged(uint nsid);
    private int _disposed;
    private readonly AutoResetEvent _kick = new(false);

    // Each queue's state and counters take 128 bytes, so no two queues share a 64-byte cache line wherever the array
    // starts: queue pairs are processed on different threads, and a line two of them write would bounce between their
    // CPUs on every command.
    [StructLayout(LayoutKind.Sequential, Size = 128)]
    private struct SubmissionState
    {
        public bool Exists;
        public DmaAddress Base;
        public int Size, Head, Tail, CqId;
    }

    [StructLayout(LayoutKind.Sequential, Size = 128)]
    private struct CompletionState
    {
        public bool Exists;
        public DmaAddress Base;
        public int Size, Head, Tail, Vector;
        public bool Phase, InterruptsEnabled;
    }

    /// <summary>Counted under the queue's lock (the controller's for the admin queue), read without it.</summary>
    [StructLayout(LayoutKind.Sequential, Size = 128)]
    private struct QueueCounters
    {
        public long IoCommands;
        public int SubmissionDoorbells;
        // SMART / Health counters of the queue's successful I/O (NvmeDevice.LogPages.cs): per queue, so that queues
        // processed on different threads do not share a cache line per command; the log page sums them.
        public long Read512, Written512, HostReads, HostWrites, Succeeded;
    }

    /// <summary>Creates a controller; the namespace starts zeroed.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range.</exception>
    public NvmeDevice(NvmeDeviceOptions? options = null)
        : base(new EmulatedConfigSpace(0x1b36, 0x0010, classCode: 0x010802, revision: 0x02))   // QEMU's NVMe IDs; class 01:08:02 NVM Express
    {
        _options = options ?? new NvmeDeviceOptions();
        _options.Validate();
        InitializeNamespaces();
        _sqs = new SubmissionState[_options.MaxIoQueues + 1];
        _cqs = new CompletionState[_options.MaxIoQueues + 1];
        _counters = new QueueCounters[_options.MaxIoQueues + 1];
        _sqLocks = [.. Enumerable.Range(0, _sqs.Length).Select(_ => new Lock())];
        _cqLocks = [.. Enumerable.Range(0, _cqs.Length).Select(_ => new Lock())];
        _interrupts = new long[_options.MsixVectors];
        Config.SetSubsystem(0x1af4, 0x1100);
        Config.SetInterruptPin(1);
        SetBar(0, new EmulatedBar(Bar0Size, ReadBar0, WriteBar0));
        AddMsix(_options.MsixVectors, MsixBar, MsixPbaOffset, MsixBarSize);
        SetIrqCount(IrqIndex.Intx, 1);
        PowerOnReset();
    }

    /// <summary>The options the controller was created with.</summary>
    public NvmeDeviceOptions Options => _options;

    /// <summary>Namespace 1's bytes (block n at n × block size); empty once it is deleted. See <see cref="NamespaceDisk"/>.</summary>
    public Span<byte> Disk => NamespaceDisk(1);

    /// <summary>Raised with a description whenever the host breaks a rule of the specification (see the class remarks).</summary>
    public event Action<string>? ProtocolViolation;

    /// <summary>Raised on controller state changes: "enable", "disable", "shutdown", "reset", "fatal".</summary>
    public event Action<string>? StateChanged;

    /// <summary>Run commands on a worker thread shortly after the doorbell instead of inside the doorbell write.</summary>
    public bool ProcessOnWorkerThread { get; set; }

    /// <summary>Fault injection: ignore I/O queues, so their commands never complete (to test timeouts).</summary>
    public bool Stalled { get; set; }

    /// <summary>Fault injection: complete the next I/O command with this status instead of running it.</summary>
    public NvmeStatus? FailNextIo
    {
        get { lock (_faultLock) { return _failNextIo; } }
        set
        {
            lock (_faultLock)
            {
                _failNextIo = value;
                _failNextArmed = value.HasValue;
            }
        }
    }

    /// <summary>
    /// Makes the next I/O completion break the rules of NVMe 1.4 §4.6 as a buggy or hostile controller would, to
    /// test that the driver validates what it reads; reset to <see cref="NvmeMisbehavior.None"/> once used.
    /// </summary>
    public NvmeMisbehavior MisbehaveNextIo { get; set; }

    /// <summary>True while CC.EN is set.</summary>
    public bool Enabled => (Volatile.Read(ref _cc) & 1) != 0;

    /// <summary>I/O submission queues that exist.</summary>
    public int QueuesAlive
    {
        get
        {
            lock (_lock)
            {
                int n = 0;
                for (int i = 1; i < _sqs.Length; i++) { if (_sqs[i].Exists) { n++; } }
                return n;
            }
        }
    }

    /// <summary>I/O commands fetched so far.</summary>
    public long IoCommands
    {
        get
        {
            long n = 0;
            for (int q = 1; q < _counters.Length; q++) { n += Volatile.Read(ref _counters[q].IoCommands); }
            return n;
        }
    }

    /// <summary>The most entries one command's PRP list held.</summary>
    public int MaxPrpListEntries => Volatile.Read(ref _maxPrpListEntries);

    /// <summary>Controller resets (CC.EN 1 → 0).</summary>
    public int ControllerResets { get; private set; }

    /// <summary>Function resets (VFIO device reset, client disconnect).</summary>
    public int FunctionResets { get; private set; }

    /// <summary>Submission tail doorbell writes to queue <paramref name="queueId"/>.</summary>
    public int SubmissionDoorbells(int queueId) => Volatile.Read(ref _counters[queueId].SubmissionDoorbells);

    /// <summary>MSI-X signals sent on <paramref name="vector"/>.</summary>
    public long InterruptsSignalled(int vector) => Interlocked.Read(ref _interrupts[vector]);

    /// <summary>Fault injection: sets CSTS.CFS; the controller fetches nothing until the host disables it.</summary>
    public void SetFatal()
    {
        UpdateCsts(clear: 0, set: 2);
        StateChanged?.Invoke("fatal");
    }

    /// <inheritdoc />
    public override void Reset()
    {
        lock (_lock)
        {
            FunctionResets++;
            PowerOnReset();
            ClearMsixTable();
        }
        StateChanged?.Invoke("reset");
    }

    /// <summary>Stops the worker thread, if one was started.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) { return; }
        _stopWorker = true;
        _kick.Set();
        _worker?.Join();
        _kick.Dispose();
    }

    // ------------------------------------------------------------------ registers (NVMe 1.4 §3.1)

    private ulong Cap =>
        2047UL                                  // MQES: 2048 entries
        | 1UL << 16                             // CQR: queues must be physically contiguous
        | 15UL << 24                            // TO: 7.5 s
        | (ulong)_options.DoorbellStride << 32  // DSTRD
        | 1UL << 37                             // CSS bit 0: NVM command set
        | 1UL << 43;                            // CSS bit 6: I/O command sets (Identify CNS 06h, 1Ch); MPSMIN = MPSMAX = 0 (4 KiB pages)

    private void PowerOnReset()
    {
        _cc = _aqa = 0;
        UpdateCsts(clear: ~0u, set: 0);
        _asq = _acq = 0;
        DeleteAllQueues();
        ResetFeatureState();
    }

    /// <summary>Under the controller lock: each queue goes under its own lock, once no command of it is being processed.</summary>
    private void DeleteAllQueues()
    {
        for (int q = 0; q < _sqs.Length; q++) { lock (_sqLocks[q]) { _sqs[q] = default; } }
        for (int q = 0; q < _cqs.Length; q++) { lock (_cqLocks[q]) { _cqs[q] = default; } }
        _queuesConfigured = false;
        _grantedQueues = 0;
        ResetAsyncEvents();
    }

    /// <summary>
    /// CSTS = (CSTS &amp; ~<paramref name="clear"/>) | <paramref name="set"/>, atomically: the I/O path sets CFS
    /// (<see cref="Fatal"/>) without the controller lock that guards every other change.
    /// </summary>
    private void UpdateCsts(uint clear, uint set)
    {
        uint old;
        do { old = Volatile.Read(ref _csts); }
        while (Interlocked.CompareExchange(ref _csts, (old & ~clear) | set, old) != old);
    }

    private void ReadBar0(ulong offset, Span<byte> data)
    {
        ulong value = 0;
        if (!Aligned(offset, data.Length)) { Violation($"BAR0 read of {data.Length} bytes at 0x{offset:x}: registers are read 4 or 8 bytes wide, aligned"); }
        else
        {
            lock (_lock)
            {
                value = Dword(offset);
                if (data.Length == 8) { value |= (ulong)Dword(offset + 4) << 32; }
            }
        }
        Span<byte> all = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(all, value);
        data.Clear();
        all[..Math.Min(8, data.Length)].CopyTo(data);
    }

    /// <summary>The 32-bit register at <paramref name="offset"/>; reserved ones and doorbells read 0.</summary>
    private uint Dword(ulong offset) => offset switch
    {
        ControllerRegister.Cap => (uint)Cap,
        ControllerRegister.Cap + 4 => (uint)(Cap >> 32),
        ControllerRegister.Vs => 0x0001_0400,        // 1.4.0; INTMS/INTMC read 0 while MSI-X is used
        ControllerRegister.Cc => _cc,
        ControllerRegister.Csts => Volatile.Read(ref _csts),
        ControllerRegister.Aqa => _aqa,
        ControllerRegister.Asq => (uint)_asq,
        ControllerRegister.Asq + 4 => (uint)(_asq >> 32),
        ControllerRegister.Acq => (uint)_acq,
        ControllerRegister.Acq + 4 => (uint)(_acq >> 32),
        _ => 0,
    };

    private void WriteBar0(ulong offset, ReadOnlySpan<byte> data)
    {
        if (!Aligned(offset, data.Length)) { Violation($"BAR0 write of {data.Length} bytes at 0x{offset:x}: registers are written 4 or 8 bytes wide, aligned"); return; }
        ulong value = data.Length == 8 ? BinaryPrimitives.ReadUInt64LittleEndian(data) : BinaryPrimitives.ReadUInt32LittleEndian(data);
        if (offset >= ControllerRegister.DoorbellBase)
        {
            if (data.Length != 4) { Violation($"doorbell write of {data.Length} bytes at 0x{offset:x}: doorbells are 32 bits"); return; }
            if (Doorbell(offset, (uint)value)) { _kick.Set(); }
            return;
        }
        lock (_lock)
        {
            switch (offset)
            {
                case ControllerRegister.Cc when data.Length == 4: WriteCc((uint)value); break;
                case ControllerRegister.Aqa when data.Length == 4: _aqa = (uint)value & 0x0FFF_0FFF; break;
                case ControllerRegister.Asq: _asq = Merge(_asq, value, data.Length, high: false); break;
                case ControllerRegister.Asq + 4 when data.Length == 4: _asq = Merge(_asq, value, 4, high: true); break;
                case ControllerRegister.Acq: _acq = Merge(_acq, value, data.Length, high: false); break;
                case ControllerRegister.Acq + 4 when data.Length == 4: _acq = Merge(_acq, value, 4, high: true); break;
                case ControllerRegister.Intms or ControllerRegister.Intmc when data.Length == 4:
                    break;   // interrupt mask registers are reserved when MSI-X is in use (§3.1.3, §3.1.4): ignored
                default:
                    Violation($"write of 0x{value:x} to read-only or reserved register 0x{offset:x} ({data.Length} bytes)");
                    break;
            }
        }
    }

    private static ulong Merge(ulong old, ulong value, int width, bool high) =>
        width == 8 ? value : high ? (old & 0xFFFF_FFFFUL) | value << 32 : (old & ~0xFFFF_FFFFUL) | value;

    private static bool Aligned(ulong offset, int width) =>
        width is 4 or 8 && offset % (ulong)width == 0 && offset + (ulong)width <= Bar0Size;

    private void WriteCc(uint value)
    {
        bool wasEnabled = (_cc & 1) != 0, enable = (value & 1) != 0;
        uint shn = (value >> 14) & 3;
        _cc = value;
        if (shn != 0 && enable)
        {
            // Shutdown completes at once: there is nothing volatile to flush (§7.6.2).
            UpdateCsts(clear: 3u << 2, set: 2u << 2);
            StateChanged?.Invoke("shutdown");
        }
        if (!wasEnabled && enable)
        {
            int sqSize = (int)(_aqa & 0xFFF) + 1, cqSize = (int)((_aqa >> 16) & 0xFFF) + 1;
            string? refused =
                ((value >> 7) & 0xF) != 0 ? "CC.MPS asks for pages other than 4 KiB (CAP.MPSMAX = 0)"
                : ((value >> 4) & 7) != 0 ? "CC.CSS selects a command set other than NVM"
                : (_asq & (Page - 1)) != 0 || (_acq & (Page - 1)) != 0 ? "ASQ and ACQ must be page aligned"
                : sqSize < 2 || cqSize < 2 ? "AQA gives an admin queue of fewer than 2 entries"
                : null;
            if (refused is not null)
            {
                // A controller enabled with settings it cannot honour reports Controller Fatal Status (§3.1.6).
                UpdateCsts(clear: ~0u, set: 1 | 2);
                Violation("controller enabled with bad settings: " + refused);
                StateChanged?.Invoke("fatal");
                return;
            }
            _sqs[0] = new SubmissionState { Exists = true, Base = new DmaAddress(_asq), Size = sqSize, CqId = 0 };
            _cqs[0] = new CompletionState { Exists = true, Base = new DmaAddress(_acq), Size = cqSize, Phase = true, InterruptsEnabled = true, Vector = 0 };
            UpdateCsts(clear: ~(3u << 2), set: 1);
            StateChanged?.Invoke("enable");
        }
        else if (wasEnabled && !enable)
        {
            // CC.EN 1 -> 0: controller reset; every queue is deleted and CSTS.CFS clears (§3.1.5, §7.3.2).
            DeleteAllQueues();
            ResetFeatureState();
            UpdateCsts(clear: ~0u, set: 0);
            ControllerResets++;
            StateChanged?.Invoke("disable");
        }
    }

    /// <summary>
    /// Handles a doorbell write under the lock of the queue rung (the controller's for the admin queue, whose
    /// commands change the queue tables); returns true when the worker thread should run.
    /// </summary>
    private bool Doorbell(ulong offset, uint value)
    {
        ulong stride = 4UL << _options.DoorbellStride;
        ulong index = (offset - ControllerRegister.DoorbellBase) / stride;
        int qid = (int)(index / 2);
        if ((offset - ControllerRegister.DoorbellBase) % stride != 0 || qid >= _sqs.Length)
        {
            Violation($"doorbell write at 0x{offset:x} is not the doorbell of any queue (stride {stride})");
            return false;
        }
        bool tail = index % 2 == 0;
        if (qid == 0)
        {
            lock (_lock) { return tail ? SubmissionTail(0, value) : SetCompletionHead(0, value) && ResumeWaiting(0); }
        }
        if (tail)
        {
            lock (_sqLocks[qid]) { return SubmissionTail(qid, value); }
        }
        lock (_cqLocks[qid])
        {
            if (!SetCompletionHead(qid, value)) { return false; }
        }
        // The completion queue's lock is let go first: a submission queue's lock is taken before it (class remarks).
        return ResumeWaiting(qid);
    }

    /// <summary>An SQ tail doorbell, under the queue's lock: runs what was placed, or leaves it to the worker (true).</summary>
    private bool SubmissionTail(int qid, uint value)
    {
        ref var sq = ref _sqs[qid];
        if (!sq.Exists) { Violation($"SQ {qid} tail doorbell rung, but the queue does not exist"); return false; }
        if (value >= (uint)sq.Size) { Violation($"SQ {qid} tail {value} beyond its size {sq.Size}"); return false; }
        sq.Tail = (int)value;
        _counters[qid].SubmissionDoorbells++;
        if (ProcessOnWorkerThread) { StartWorker(); return true; }
        Process(qid);
        return false;
    }

    /// <summary>A CQ head doorbell, under the completion queue's lock; false when the write was refused.</summary>
    private bool SetCompletionHead(int cqid, uint value)
    {
        ref var cq = ref _cqs[cqid];
        if (!cq.Exists) { Violation($"CQ {cqid} head doorbell rung, but the queue does not exist"); return false; }
        if (value >= (uint)cq.Size) { Violation($"CQ {cqid} head {value} beyond its size {cq.Size}"); return false; }
        cq.Head = (int)value;
        return true;
    }

    /// <summary>
    /// Room in CQ <paramref name="cqid"/>: the submission queues that post to it and waited for room go on (or the
    /// worker takes them: true). For the admin CQ under the controller lock; otherwise holding no lock.
    /// </summary>
    private bool ResumeWaiting(int cqid)
    {
        if (ProcessOnWorkerThread) { return true; }
        if (cqid == 0)
        {
            if (_sqs[0].Exists && _sqs[0].Head != _sqs[0].Tail) { Process(0); }
            return false;
        }
        for (int q = 1; q < _sqs.Length; q++)
        {
            // Read without the queue's lock, as a hint; Process looks again under it.
            if (_sqs[q].Exists && _sqs[q].CqId == cqid && _sqs[q].Head != _sqs[q].Tail)
            {
                lock (_sqLocks[q]) { Process(q); }
            }
        }
        return false;
    }

    private void StartWorker()
    {
        lock (_workerLock)
        {
            if (_worker is not null) { return; }
            _worker = new Thread(() =>
            {
                while (!_stopWorker)
                {
                    _kick.WaitOne(5);
                    Thread.Sleep(1);   // deliberately later than the doorbell, so completion is asynchronous
                    lock (_lock) { Process(0); }
                    for (int q = 1; q < _sqs.Length; q++)
                    {
                        lock (_sqLocks[q]) { Process(q); }
                    }
                }
            }) { IsBackground = true, Name = "emulated nvme" };
            _worker.Start();
        }
    }

    // ------------------------------------------------------------------ queues (§4.1, §4.6)

    /// <summary>
    /// Fetches and runs what SQ <paramref name="qid"/> holds, under its lock (the controller's for the admin queue);
    /// an I/O queue's completions are posted under its completion queue's lock as well.
    /// </summary>
    private void Process(int qid)
    {
        if ((Volatile.Read(ref _cc) & 1) == 0 || (Volatile.Read(ref _csts) & 2) != 0) { return; }   // disabled or fatal: nothing is fetched
        if (!_sqs[qid].Exists) { return; }
        if (qid == 0)
        {
            Drain(0);
            return;
        }
        if (Stalled) { return; }
        lock (_cqLocks[_sqs[qid].CqId]) { Drain(qid); }
    }

    private void Drain(int qid)
    {
        Span<byte> entry = stackalloc byte[NvmeCommand.Size];
        while (_sqs[qid].Exists && _sqs[qid].Head != _sqs[qid].Tail)
        {
            ref var sq = ref _sqs[qid];
            ref var cq = ref _cqs[sq.CqId];
            // The host must not let a CQ overflow (§4.6); the controller waits for room rather than fetching.
            if ((cq.Tail + 1) % cq.Size == cq.Head) { return; }
            DmaAddress at = sq.Base + (ulong)sq.Head * NvmeCommand.Size;
            if (!TryDma(at, entry, toHost: false))
            {
                Fatal($"SQ {qid} entry {sq.Head} at {at} cannot be fetched");
                return;
            }
            var command = MemoryMarshal.Read<NvmeCommand>(entry);
            sq.Head = sq.Head + 1 == sq.Size ? 0 : sq.Head + 1;
            int cqid = sq.CqId, head = sq.Head;
            uint dw0 = 0;
            var status = qid == 0 ? Admin(command, ref dw0) : Io(qid, command);
            if (AfterCommand(qid, command, status)) { continue; }   // error log, SMART counters; an AER stays outstanding (§5.2)
            if (!Post(cqid, qid, head, command.CommandId, status, dw0)) { return; }
        }
    }

    private bool Post(int cqid, int sqid, int sqHead, ushort cid, NvmeStatus status, uint dw0)
    {
        ref var cq = ref _cqs[cqid];
        if (!cq.Exists) { return true; }    // the command deleted the CQ it completes to (not allowed: §5.4), nothing to post
        var completion = new NvmeCompletion
        {
            Dw0 = dw0,
            SubmissionQueueHead = (ushort)sqHead,
            SubmissionQueueId = (ushort)sqid,
            CommandId = cid,
            StatusAndPhase = (ushort)(status.Value << 1 | (cq.Phase ? 1 : 0)),
        };
        int copies = 1;
        bool stale = false;
        if (sqid != 0 && MisbehaveNextIo != NvmeMisbehavior.None)
        {
            switch (MisbehaveNextIo)
            {
                case NvmeMisbehavior.UnknownCommandId: completion.CommandId = (ushort)(cid ^ 0x4000); break;
                case NvmeMisbehavior.SubmissionHeadOutOfRange: completion.SubmissionQueueHead = (ushort)_sqs[sqid].Size; break;
                case NvmeMisbehavior.WrongSubmissionQueue: completion.SubmissionQueueId = (ushort)(sqid + 1); break;
                case NvmeMisbehavior.DuplicateCompletion: copies = 2; break;
                case NvmeMisbehavior.StalePhase: stale = true; break;
                case NvmeMisbehavior.ReservedStatusCodeType:
                    completion.StatusAndPhase = (ushort)(NvmeStatus.Create((StatusCodeType)5, 0x01).Value << 1 | (cq.Phase ? 1 : 0));
                    break;
            }
            MisbehaveNextIo = NvmeMisbehavior.None;
        }
        Span<byte> bytes = stackalloc byte[NvmeCompletion.Size];
        for (; copies > 0; copies--)
        {
            // The copy of a duplicate goes to the next slot with that slot's phase, so the host sees it as posted.
            // A stale phase tag (NVMe 1.4 §4.6) leaves the entry looking unwritten to the host.
            completion.StatusAndPhase = (ushort)(completion.StatusAndPhase & ~1 | (cq.Phase != stale ? 1 : 0));
            MemoryMarshal.Write(bytes, in completion);
            DmaAddress at = cq.Base + (ulong)cq.Tail * NvmeCompletion.Size;
            // The status and phase tag (the last two bytes) go last: once the phase flips, the host may read the entry.
            if (!TryDma(at, bytes[..14], toHost: true) || !TryDma(at + 14, bytes[14..], toHost: true))
            {
                Fatal($"CQ {cqid} entry {cq.Tail} at {at} cannot be written");
                return false;
            }
            cq.Tail = cq.Tail + 1 == cq.Size ? 0 : cq.Tail + 1;
            if (cq.Tail == 0) { cq.Phase = !cq.Phase; }
        }
        if (cq.InterruptsEnabled && cq.Vector < _interrupts.Length && Context.SignalInterrupt(IrqIndex.Msix, cq.Vector))
        {
            Interlocked.Increment(ref _interrupts[cq.Vector]);
        }
        return true;
    }

    private void Fatal(string why)
    {
        UpdateCsts(clear: 0, set: 2);
        Violation(why + "; controller fatal status set");
        StateChanged?.Invoke("fatal");
    }

    /// <summary>
    /// Moves bytes between the host's memory and <paramref name="data"/>; false when the host did not map the range,
    /// the client failed the access, or bus mastering is off (PCI Local Bus 3.0 §6.2.2: no DMA without it).
    /// </summary>
    private bool TryDma(DmaAddress address, Span<byte> data, bool toHost)
    {
        if ((Config.Command & PciCommand.BusMaster) == 0)
        {
            Violation($"DMA {(toHost ? "write" : "read")} of {data.Length} bytes at {address} with bus mastering off");
            return false;
        }
        try
        {
            if (toHost) { Context.WriteDma(address, data); }
            else { Context.ReadDma(address, data); }
            return true;
        }
        catch (Exception e) when (e is VfioException or IOException or TimeoutException)
        {
            Violation($"DMA {(toHost ? "write" : "read")} of {data.Length} bytes at {address} failed: {e.Message}");
            return false;
        }
    }

    private void Violation(string what) => ProtocolViolation?.Invoke(what);

    // ------------------------------------------------------------------ admin commands (§5)

    private static NvmeStatus Generic(GenericStatusCode code) => NvmeStatus.Create(code, doNotRetry: true);

    private static NvmeStatus Specific(CommandSpecificStatusCode code) => NvmeStatus.Create(code, doNotRetry: true);

    private NvmeStatus Admin(in NvmeCommand c, ref uint dw0)
    {
        int maxQid = _sqs.Length - 1;
        switch ((AdminOpcode)c.Opcode)
        {
            case AdminOpcode.Identify:
                return Identify(c);
            case AdminOpcode.SetFeatures when (c.Cdw10 & 0xFF) == (uint)FeatureId.NumberOfQueues:
            {
                if (_queuesConfigured) { return Generic(GenericStatusCode.CommandSequenceError); }   // once per enable (§5.21.1.7)
                if ((c.Cdw11 & 0xFFFF) == 0xFFFF || (c.Cdw11 >> 16) == 0xFFFF) { return Generic(GenericStatusCode.InvalidField); }
                _queuesConfigured = true;
                int asked = (int)Math.Min(c.Cdw11 & 0xFFFF, c.Cdw11 >> 16) + 1;
                _grantedQueues = Math.Min(asked, maxQid);
                dw0 = (uint)(_grantedQueues - 1) | (uint)(_grantedQueues - 1) << 16;
                return default;
            }
            case AdminOpcode.GetLogPage:
                return GetLogPage(c);
            case AdminOpcode.AsynchronousEventRequest:
                return AsyncEventRequest(c);
            case AdminOpcode.SetFeatures when (c.Cdw10 & 0xFF) == (uint)FeatureId.AsynchronousEventConfiguration:
                return SetAsyncEventConfig(c);
            case AdminOpcode.GetFeatures when (c.Cdw10 & 0xFF) == (uint)FeatureId.AsynchronousEventConfiguration:
                return GetAsyncEventConfig(c, ref dw0);
            case AdminOpcode.SetFeatures:
                return SetFeatures(c, ref dw0);
            case AdminOpcode.GetFeatures:
                return GetFeatures(c, ref dw0);
            case AdminOpcode.FirmwareImageDownload:
                return FirmwareImageDownload(c);
            case AdminOpcode.FirmwareCommit:
                return FirmwareCommit(c);
            case AdminOpcode.CreateIoCompletionQueue:
            {
                int qid = (int)(c.Cdw10 & 0xFFFF), size = (int)(c.Cdw10 >> 16) + 1;
                bool contiguous = (c.Cdw11 & 1) != 0, ien = (c.Cdw11 & 2) != 0;
                int vector = (int)(c.Cdw11 >> 16);
                if (qid < 1 || qid > _grantedQueues || _cqs[qid].Exists) { return Specific(CommandSpecificStatusCode.InvalidQueueIdentifier); }
                if (size < 2 || size > 2048) { return Specific(CommandSpecificStatusCode.InvalidQueueSize); }
                if (!contiguous || (c.Prp1.Value & (Page - 1)) != 0) { return Generic(GenericStatusCode.InvalidField); }
                if (ien && vector >= _interrupts.Length) { return Specific(CommandSpecificStatusCode.InvalidInterruptVector); }
                lock (_cqLocks[qid]) { _cqs[qid] = new CompletionState { Exists = true, Base = c.Prp1, Size = size, Phase = true, InterruptsEnabled = ien, Vector = vector }; }
                return default;
            }
            case AdminOpcode.CreateIoSubmissionQueue:
            {
                int qid = (int)(c.Cdw10 & 0xFFFF), size = (int)(c.Cdw10 >> 16) + 1, cqid = (int)(c.Cdw11 >> 16);
                if (qid < 1 || qid > _grantedQueues || _sqs[qid].Exists) { return Specific(CommandSpecificStatusCode.InvalidQueueIdentifier); }
                if (cqid < 1 || cqid > maxQid || !_cqs[cqid].Exists) { return Specific(CommandSpecificStatusCode.CompletionQueueInvalid); }
                if (size < 2 || size > 2048) { return Specific(CommandSpecificStatusCode.InvalidQueueSize); }
                if ((c.Cdw11 & 1) == 0 || (c.Prp1.Value & (Page - 1)) != 0) { return Generic(GenericStatusCode.InvalidField); }
                lock (_sqLocks[qid]) { _sqs[qid] = new SubmissionState { Exists = true, Base = c.Prp1, Size = size, CqId = cqid }; }
                return default;
            }
            case AdminOpcode.DeleteIoSubmissionQueue:
            {
                int qid = (int)(c.Cdw10 & 0xFFFF);
                if (qid < 1 || qid > maxQid || !_sqs[qid].Exists) { return Specific(CommandSpecificStatusCode.InvalidQueueIdentifier); }
                lock (_sqLocks[qid]) { _sqs[qid] = default; }   // once no command of it is being run
                return default;
            }
            case AdminOpcode.DeleteIoCompletionQueue:
            {
                int qid = (int)(c.Cdw10 & 0xFFFF);
                if (qid < 1 || qid > maxQid || !_cqs[qid].Exists) { return Specific(CommandSpecificStatusCode.InvalidQueueIdentifier); }
                for (int i = 1; i <= maxQid; i++)
                {
                    if (_sqs[i].Exists && _sqs[i].CqId == qid) { return Specific(CommandSpecificStatusCode.InvalidQueueDeletion); }
                }
                lock (_cqLocks[qid]) { _cqs[qid] = default; }
                return default;
            }
            case AdminOpcode.NamespaceManagement:
                return NamespaceManagement(c, ref dw0);
            case AdminOpcode.NamespaceAttachment:
                return NamespaceAttachment(c);
            case AdminOpcode.FormatNvm:
                return FormatNvm(c);
            default:
                return Generic(GenericStatusCode.InvalidCommandOpcode);
        }
    }

    private NvmeStatus Identify(in NvmeCommand c)
    {
        var data = new byte[4096];
        switch ((IdentifyCns)(c.Cdw10 & 0xFF))
        {
            case IdentifyCns.Controller:
                FillIdentifyController(data);                                           // every field but the ones below (NvmeDevice.LogPages.cs)
                FillNamespaceManagementIdentity(data);                                  // CNTLID, OACS, TNVMCAP, UNVMCAP, NN, FNA
                IdentifyFeaturesAndFirmware(data);                                      // VWC, FR, FRMW, FWUG per options (NvmeDevice.Features.cs)
                break;
            case IdentifyCns.Namespace or IdentifyCns.ActiveNamespaces or IdentifyCns.NamespaceDescriptors or IdentifyCns.AllocatedNamespaces
                or IdentifyCns.AllocatedNamespace or IdentifyCns.AttachedControllers or IdentifyCns.SubsystemControllers:
                return IdentifyNamespaces(c, data);
            case IdentifyCns.IoCommandSetController or IdentifyCns.IoCommandSetCombinations:
            {
                var status = IdentifyIoCommandSet(c, data);
                if (!status.IsSuccess) { return status; }
                break;
            }
            default:
                return Generic(GenericStatusCode.InvalidField);
        }
        return Transfer(c.Prp1, c.Prp2, data.Length, data, toHost: true);
    }

    private static void Pad(Span<byte> field, string text)
    {
        field.Fill((byte)' ');
        Encoding.ASCII.GetBytes(text, field);
    }

    // ------------------------------------------------------------------ I/O commands (NVM command set §6)

    private NvmeStatus Io(int qid, in NvmeCommand c)
    {
        _counters[qid].IoCommands++;
        if (_failNextArmed && TakeInjectedFailure() is { } injected) { return injected; }
        if (ActiveNamespace(c.Nsid) is not { } ns) { return Generic(GenericStatusCode.InvalidNamespaceOrFormat); }
        int blockSize = ns.BlockSize;
        switch ((NvmOpcode)c.Opcode)
        {
            case NvmOpcode.Flush:
                return default;
            case NvmOpcode.Read:
            case NvmOpcode.Write:
            {
                if (!ns.InRange(c.StartingLba, c.BlockCount)) { return Generic(GenericStatusCode.LbaOutOfRange); }
                int bytes = c.BlockCount * blockSize;
                if (_options.Mdts != 0 && bytes > (4096 << _options.Mdts)) { return Generic(GenericStatusCode.InvalidField); }
                var range = ns.Blocks(c.StartingLba, c.BlockCount);
                return Transfer(c.Prp1, c.Prp2, bytes, range, toHost: (NvmOpcode)c.Opcode == NvmOpcode.Read);
            }
            case NvmOpcode.WriteZeroes when (_options.Oncs & OptionalNvmCommands.WriteZeroes) != 0:
                if (!ns.InRange(c.StartingLba, c.BlockCount)) { return Generic(GenericStatusCode.LbaOutOfRange); }
                ns.Blocks(c.StartingLba, c.BlockCount).Clear();
                return default;
            case NvmOpcode.DatasetManagement when (_options.Oncs & OptionalNvmCommands.DatasetManagement) != 0:
                return DatasetManagement(c, ns);
            case NvmOpcode.Compare when (_options.Oncs & OptionalNvmCommands.Compare) != 0:
                return Compare(c, ns);
            default:
                return Generic(GenericStatusCode.InvalidCommandOpcode);
        }
    }

    /// <summary>The status <see cref="FailNextIo"/> set, once: queues processed at the same time take it only once.</summary>
    private NvmeStatus? TakeInjectedFailure()
    {
        lock (_faultLock)
        {
            var injected = _failNextIo;
            _failNextIo = null;
            _failNextArmed = false;
            return injected;
        }
    }

    private NvmeStatus DatasetManagement(in NvmeCommand c, EmulatedNamespace ns)
    {
        // The range list is one 4 KiB page at most: 256 ranges of 16 bytes (§6.7).
        int ranges = (int)(c.Cdw10 & 0xFF) + 1;
        Span<byte> list = stackalloc byte[256 * 16];
        list = list[..(ranges * 16)];
        var status = Transfer(c.Prp1, c.Prp2, list.Length, list, toHost: false);
        if (!status.IsSuccess) { return status; }
        var parsed = MemoryMarshal.Cast<byte, DsmRange>(list);
        foreach (ref readonly var r in parsed)
        {
            if (!ns.InRange(r.StartingLba, r.BlockCount)) { return Generic(GenericStatusCode.LbaOutOfRange); }
        }
        if ((c.Cdw11 & 4) != 0)   // AD: deallocate; deallocated blocks read as zeroes here (DLFEAT behaviour)
        {
            foreach (ref readonly var r in parsed)
            {
                ns.Blocks(r.StartingLba, r.BlockCount).Clear();
            }
        }
        return default;
    }

    /// <summary>Moves data as PRP1/PRP2 describe it (NVMe 1.4 §4.3), checking the offsets a controller may rely on.</summary>
    private NvmeStatus Transfer(DmaAddress prp1, DmaAddress prp2, int length, Span<byte> data, bool toHost)
    {
        if ((prp1.Value & 3) != 0) { return Generic(GenericStatusCode.InvalidPrpOffset); }
        int first = (int)Math.Min((ulong)length, Page - (prp1.Value & (Page - 1)));
        if (!TryDma(prp1, data[..first], toHost)) { return Generic(GenericStatusCode.DataTransferError); }
        int done = first;
        if (done == length) { return default; }
        if (length - done <= (int)Page)
        {
            if ((prp2.Value & (Page - 1)) != 0) { return Generic(GenericStatusCode.InvalidPrpOffset); }
            return TryDma(prp2, data[done..], toHost) ? default : Generic(GenericStatusCode.DataTransferError);
        }
        if ((prp2.Value & 7) != 0) { return Generic(GenericStatusCode.InvalidPrpOffset); }
        DmaAddress entryAddress = prp2;
        int entries = 0;
        Span<byte> entryBytes = stackalloc byte[8];
        while (done < length)
        {
            if (!TryDma(entryAddress, entryBytes, toHost: false)) { return Generic(GenericStatusCode.DataTransferError); }
            // A list entry is a 64-bit little-endian address (§4.3); this is where the model takes it off the wire.
            var entry = new DmaAddress(BinaryPrimitives.ReadUInt64LittleEndian(entryBytes));
            entries++;
            bool lastInPage = ((entryAddress.Value + 8) & (Page - 1)) == 0;
            if (lastInPage && length - done > (int)Page)
            {
                // The last entry of a list page with more than one page to go points to the next list page.
                if ((entry.Value & 7) != 0) { return Generic(GenericStatusCode.InvalidPrpOffset); }
                entryAddress = entry;
                continue;
            }
            if ((entry.Value & (Page - 1)) != 0) { return Generic(GenericStatusCode.InvalidPrpOffset); }
            int chunk = Math.Min(length - done, (int)Page);
            if (!TryDma(entry, data.Slice(done, chunk), toHost)) { return Generic(GenericStatusCode.DataTransferError); }
            done += chunk;
            entryAddress += 8;
        }
        int most;
        while (entries > (most = Volatile.Read(ref _maxPrpListEntries))
            && Interlocked.CompareExchange(ref _maxPrpListEntries, entries, most) != most) { }
        return default;
    }
}

/// <summary>Ways <see cref="NvmeDevice.MisbehaveNextIo"/> breaks an I/O completion.</summary>
public enum NvmeMisbehavior
{
    /// <summary>Behave.</summary>
    None,

    /// <summary>A command identifier no command in flight has.</summary>
    UnknownCommandId,

    /// <summary>An SQ head pointer past the end of the submission queue.</summary>
    SubmissionHeadOutOfRange,

    /// <summary>The identifier of another submission queue.</summary>
    WrongSubmissionQueue,

    /// <summary>The correct completion, then the same entry again in the next slot: a command completed twice.</summary>
    DuplicateCompletion,

    /// <summary>A status code type NVMe 1.4 Figure 125 reserves (5h).</summary>
    ReservedStatusCodeType,

    /// <summary>
    /// The entry is written with the previous pass's phase tag (NVMe 1.4 §4.6), so the host cannot tell it was posted:
    /// the command, and every one completed after it in that queue, looks outstanding until the host times it out.
    /// </summary>
    StalePhase,
}
