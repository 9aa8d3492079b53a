using System.Buffers.Binary;
using Vfio.Devices;
using Vfio.Dma;
using Vfio.User.Server;

namespace Vfio.Emulation.Edu;

/// <summary>
/// QEMU's educational PCI device (docs/specs/edu.rst), emulated with the same register map: 1234:11e8, BAR0 of
/// 1 MiB, identification 0x010000ed, liveness inversion, factorial with a "computing" status bit, interrupt
/// raise/acknowledge with a status register, and a DMA engine that moves data between client memory and a 4 KiB
/// buffer at device address 0x40000. Drivers written against the real device run against this one unchanged.
/// </summary>
public sealed class EduDevice : EmulatedPciDevice
{
    /// <summary>Register offsets in BAR0.</summary>
    public const uint Identification = 0x00, Liveness = 0x04, Factorial = 0x08, Status = 0x20, IrqStatus = 0x24,
        IrqRaise = 0x60, IrqAck = 0x64, DmaSource = 0x80, DmaDestination = 0x88, DmaCount = 0x90, DmaCommand = 0x98;

    /// <summary>Device address of the DMA buffer, and its size.</summary>
    public const ulong BufferAddress = 0x40000, BufferSize = 4096;

    /// <summary>Value of the identification register: version 1.0.</summary>
    public const uint Id = 0x010000ed;

    /// <summary>The interrupt status bit raised when a DMA with the interrupt flag completes.</summary>
    public const uint DmaIrq = 0x100;

    /// <summary>The interrupt status bit raised when a factorial completes with status bit 0x80 set.</summary>
    public const uint FactorialIrq = 0x001;

    private const uint StatusComputing = 0x01, StatusIrqOnFactorial = 0x80;
    private const ulong CommandStart = 1, CommandToRam = 2, CommandIrq = 4;

    private readonly Lock _lock = new();
    private readonly byte[] _buffer = new byte[BufferSize];
    private readonly ulong _dmaMask;
    private uint _liveness, _factorial, _status, _irqStatus;
    private ulong _dmaSource, _dmaDestination, _dmaCount, _dmaCommand;
    private Task _work = Task.CompletedTask;

    /// <summary>Creates the device; <paramref name="dmaMask"/> limits the RAM addresses its DMA engine uses (28 bits, as QEMU's default).</summary>
    public EduDevice(ulong dmaMask = (1UL << 28) - 1)
        : base(new EmulatedConfigSpace(0x1234, 0x11e8, classCode: 0x00ff00, revision: 0x10))
    {
        _dmaMask = dmaMask;
        Config.SetInterruptPin(1);
        Config.AddMsiCapability(1);
        SetBar(0, new EmulatedBar(1 << 20, Read, Write));
        SetIrqCount(IrqIndex.Intx, 1);
        SetIrqCount(IrqIndex.Msi, 1);
    }

    private int _interruptsRaised;

    /// <summary>Interrupts raised so far (for tests and diagnostics).</summary>
    public int InterruptsRaised => Volatile.Read(ref _interruptsRaised);

    /// <inheritdoc />
    public override void Reset()
    {
        _work.Wait(TimeSpan.FromSeconds(1));
        lock (_lock)
        {
            _liveness = _factorial = _status = _irqStatus = 0;
            _dmaSource = _dmaDestination = _dmaCount = _dmaCommand = 0;
            Array.Clear(_buffer);
        }
    }

    private void Read(ulong offset, Span<byte> data)
    {
        ulong value = ulong.MaxValue; // what QEMU returns for an access of a size the register does not allow
        if (AccessAllowed(offset, data.Length))
        {
            lock (_lock)
            {
                value = offset switch
                {
                    Identification => Id,
                    Liveness => _liveness,
                    Factorial => _factorial,
                    Status => _status,
                    IrqStatus => _irqStatus,
                    DmaSource => _dmaSource,
                    DmaDestination => _dmaDestination,
                    DmaCount => _dmaCount,
                    DmaCommand => _dmaCommand,
                    _ => ulong.MaxValue,
                };
            }
        }
        Span<byte> all = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(all, value);
        all[..Math.Min(8, data.Length)].CopyTo(data);
        if (data.Length > 8) { data[8..].Fill(0xFF); }
    }

    private void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (!AccessAllowed(offset, data.Length)) { return; }
        ulong value = data.Length == 8 ? BinaryPrimitives.ReadUInt64LittleEndian(data) : BinaryPrimitives.ReadUInt32LittleEndian(data);
        uint v32 = (uint)value;
        lock (_lock)
        {
            switch (offset)
            {
                case Liveness:
                    _liveness = ~v32;
                    break;
                case Factorial when (_status & StatusComputing) == 0:
                    _factorial = v32;
                    _status |= StatusComputing;
                    _work = Task.Run(ComputeFactorial);
                    break;
                case Status:
                    _status = (_status & ~StatusIrqOnFactorial) | (v32 & StatusIrqOnFactorial);
                    break;
                case IrqRaise:
                    RaiseLocked(v32);
                    break;
                case IrqAck:
                    _irqStatus &= ~v32;
                    break;
                case DmaSource when !DmaBusy:
                    _dmaSource = value;
                    break;
                case DmaDestination when !DmaBusy:
                    _dmaDestination = value;
                    break;
                case DmaCount when !DmaBusy:
                    _dmaCount = value;
                    break;
                case DmaCommand when !DmaBusy && (value & CommandStart) != 0:
                    _dmaCommand = value;
                    _work = Task.Run(RunDma);
                    break;
            }
        }
    }

    private bool DmaBusy => (_dmaCommand & CommandStart) != 0;

    private static bool AccessAllowed(ulong offset, int size) => offset < 0x80 ? size == 4 : size is 4 or 8;

    private void ComputeFactorial()
    {
        lock (_lock)
        {
            uint n = _factorial, result = 1;
            // The register is 32 bits wide and wraps; from 34! on, 2^32 divides the product, so the answer is 0 and
            // a client cannot keep the device busy for billions of iterations.
            if (n >= 34) { result = 0; }
            else { for (uint i = 2; i <= n; i++) { result = unchecked(result * i); } }
            _factorial = result;
            _status &= ~StatusComputing;
            if ((_status & StatusIrqOnFactorial) != 0) { RaiseLocked(FactorialIrq); }
        }
    }

    private void RunDma()
    {
        ulong src, dst, count, command;
        lock (_lock) { (src, dst, count, command) = (_dmaSource, _dmaDestination, _dmaCount, _dmaCommand); }
        bool toRam = (command & CommandToRam) != 0;
        ulong bufferAt = toRam ? src : dst;
        ulong ram = (toRam ? dst : src) & _dmaMask;
        // The device's buffer is 4 KiB at 0x40000; a transfer that leaves it is dropped (QEMU aborts the guest instead).
        // Without bus mastering (command register bit 2, PCI Local Bus 3.0 §6.2.2) the device may not touch memory.
        bool busMaster = (Config.Command & PciCommand.BusMaster) != 0;
        if (busMaster && bufferAt >= BufferAddress && bufferAt - BufferAddress < BufferSize && count <= BufferSize - (bufferAt - BufferAddress) && count > 0)
        {
            var slice = _buffer.AsSpan((int)(bufferAt - BufferAddress), (int)count);
            try
            {
                if (toRam) { Context.WriteDma(new DmaAddress(ram), slice); }
                else { Context.ReadDma(new DmaAddress(ram), slice); }
            }
            catch (Exception e) when (e is VfioException or IOException)
            {
                // An unmapped address is a DMA fault: the transfer does not happen, the engine still finishes.
            }
        }
        lock (_lock)
        {
            _dmaCommand &= ~CommandStart;
            if ((command & CommandIrq) != 0) { RaiseLocked(DmaIrq); }
        }
    }

    // MSI when the client wired an eventfd to it, INTx otherwise (QEMU's edu checks msi_enabled the same way).
    private void RaiseLocked(uint value)
    {
        _irqStatus |= value;
        Interlocked.Increment(ref _interruptsRaised);
        if (!Context.SignalInterrupt(IrqIndex.Msi, 0))
        {
            Context.SignalInterrupt(IrqIndex.Intx, 0);
        }
    }
}
