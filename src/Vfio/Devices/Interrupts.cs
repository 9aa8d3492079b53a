namespace Vfio.Devices;

/// <summary>Interrupt indexes of a vfio-pci device (<c>VFIO_PCI_*_IRQ_INDEX</c>).</summary>
public enum IrqIndex
{
    /// <summary>Legacy INTx (one vector, level-triggered, masked by the kernel when it fires).</summary>
    Intx = 0,
    /// <summary>MSI.</summary>
    Msi = 1,
    /// <summary>MSI-X.</summary>
    Msix = 2,
    /// <summary>PCIe AER error notification.</summary>
    Err = 3,
    /// <summary>The kernel requests the device back (hot-unplug).</summary>
    Req = 4,
}

/// <summary>IRQ flags (<c>VFIO_IRQ_INFO_*</c>).</summary>
[Flags]
public enum IrqFlags : uint
{
    /// <summary>None.</summary>
    None = 0,
    /// <summary>Signalled through an eventfd.</summary>
    Eventfd = 1 << 0,
    /// <summary>Can be masked/unmasked by the user.</summary>
    Maskable = 1 << 1,
    /// <summary>The kernel masks it when it fires; the user unmasks.</summary>
    AutoMasked = 1 << 2,
    /// <summary>The vector count cannot change while enabled.</summary>
    NoResize = 1 << 3,
}

/// <summary><c>VFIO_DEVICE_GET_IRQ_INFO</c> for one index.</summary>
/// <param name="Index">The index.</param>
/// <param name="Flags">Flags.</param>
/// <param name="Count">Number of vectors (0: the device has none of this kind).</param>
public readonly record struct IrqInfo(IrqIndex Index, IrqFlags Flags, int Count);

/// <summary>Enabled vectors of one interrupt index. Disposing disables them and releases their eventfds.</summary>
public interface IInterruptSet : IDisposable
{
    /// <summary>The index these vectors belong to.</summary>
    IrqIndex Index { get; }
    /// <summary>Number of vectors.</summary>
    int Count { get; }
    /// <summary>Vector <paramref name="vector"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="vector"/> is not between 0 and <see cref="Count"/> - 1.</exception>
    /// <exception cref="ObjectDisposedException">The set is disposed.</exception>
    IInterruptVector this[int vector] { get; }
}

/// <summary>One interrupt vector, signalled by the device.</summary>
public interface IInterruptVector
{
    /// <summary>The vector number within its index.</summary>
    int Vector { get; }

    /// <summary>
    /// Completes when the vector has fired since the last wait consumed it, returning how many times it fired.
    /// Waiting does not block a thread. Cancelling the token ends the wait with <see cref="OperationCanceledException"/>.
    /// </summary>
    ValueTask<ulong> WaitAsync(CancellationToken cancellationToken = default);

    /// <summary>Consumes pending signals without waiting; returns how many there were (0 if none).</summary>
    ulong Poll();

    /// <summary>
    /// Blocks the calling thread until the vector has fired since the last wait consumed it, or until
    /// <paramref name="timeout"/> passes; returns how many times it fired (0: the time passed). Allocates nothing:
    /// for a driver's own completion thread.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The set is disposed.</exception>
    ulong Wait(TimeSpan timeout);

    /// <summary>Signals the vector from software (<c>VFIO_IRQ_SET_DATA_NONE | ACTION_TRIGGER</c>), for tests.</summary>
    /// <exception cref="ObjectDisposedException">The set is disposed.</exception>
    void Trigger();

    /// <summary>Unmasks the vector (INTx is masked by the kernel each time it fires).</summary>
    /// <exception cref="ObjectDisposedException">The set is disposed.</exception>
    void Unmask();
}
