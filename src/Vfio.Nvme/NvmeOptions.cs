using Microsoft.Extensions.Logging;
using Vfio.Spec.Nvme;

namespace Vfio.Nvme;

/// <summary>How an <see cref="NvmeController"/> is brought up.</summary>
public sealed record NvmeControllerOptions
{
    /// <summary>Entries of the admin submission and completion queues (2..4096).</summary>
    public int AdminQueueEntries { get; init; } = 32;

    /// <summary>I/O queue pairs to ask for with Set Features (Number of Queues); the controller may grant fewer.</summary>
    public int MaxIoQueues { get; init; } = 4;

    /// <summary>
    /// Enable MSI-X (vector 0 for the admin queue, vector <c>n</c> for I/O queue <c>n</c>) so that queues created
    /// with <see cref="NvmeIoQueueOptions.UseInterrupts"/> can be awaited without spinning.
    /// </summary>
    public bool EnableMsix { get; init; }

    /// <summary>How long a command may take before the driver gives up on it.</summary>
    public TimeSpan CommandTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Asynchronous Event Requests kept outstanding (0..16, at most AERL + 1 of the controller); 0 turns events off.</summary>
    public int AsyncEventRequests { get; init; } = 4;

    /// <summary>How often the AER reaper polls the admin completion queue when no admin command runs (1 ms .. 10 min).</summary>
    public TimeSpan AsyncEventPollInterval { get; init; } = TimeSpan.FromMilliseconds(20);

    /// <summary>Events <see cref="NvmeController.ReadAsyncEvents"/> buffers before dropping the oldest (1..65536).</summary>
    public int AsyncEventBufferSize { get; init; } = 64;

    /// <summary>
    /// Lower bound on how long enable, disable and shutdown may take. The controller's own CAP.TO is used when
    /// larger; QEMU reports 7.5 s, real drives up to 127.5 s.
    /// </summary>
    public TimeSpan MinimumReadyTimeout { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// When the host asks for the device back (<see cref="Devices.IPciDevice.ReleaseRequested"/>: hot-unplug, sysfs
    /// remove, unbind), the controller always stops the device and fails pending and new I/O with
    /// <see cref="DeviceReleasedException"/>; with this set (the default) it then also disposes the
    /// <see cref="Devices.IPciDevice"/>, which is what lets the kernel finish the removal. The owner's later
    /// Dispose of the device is then a no-op. Turn it off only when the owner handles the request itself.
    /// </summary>
    public bool DisposeDeviceOnReleaseRequest { get; init; } = true;

    /// <summary>Clock for timeouts (tests pass a fake one).</summary>
    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;

    /// <summary>Where the driver logs; null for none.</summary>
    public ILoggerFactory? LoggerFactory { get; init; }
}

/// <summary>How one I/O queue pair is created.</summary>
public sealed record NvmeIoQueueOptions
{
    /// <summary>Entries per queue (2..CAP.MQES+1); the queue keeps at most entries - 1 commands in flight.</summary>
    public int Entries { get; init; } = 128;

    /// <summary>
    /// Create the completion queue with interrupts enabled on its own MSI-X vector, so asynchronous waits sleep
    /// until the controller signals. Needs <see cref="NvmeControllerOptions.EnableMsix"/>. Synchronous calls poll
    /// either way.
    /// </summary>
    public bool UseInterrupts { get; init; }

    /// <summary>
    /// How the queue's completion thread waits between completions of asynchronous calls. Null (the default):
    /// <see cref="NvmeCompletionMode.Interrupt"/> with <see cref="UseInterrupts"/>, else
    /// <see cref="NvmeCompletionMode.Polled"/>. Interrupt and Hybrid create the completion queue with interrupts
    /// on the queue's MSI-X vector (they need <see cref="NvmeControllerOptions.EnableMsix"/>).
    /// </summary>
    public NvmeCompletionMode? CompletionMode { get; init; }

    /// <summary>In <see cref="NvmeCompletionMode.Hybrid"/>: how long to poll after the last completion before sleeping on the vector.</summary>
    public TimeSpan HybridSpin { get; init; } = TimeSpan.FromMicroseconds(50);
}

/// <summary>How a queue's completion thread learns that the controller posted completions (for asynchronous calls).</summary>
public enum NvmeCompletionMode
{
    /// <summary>
    /// Poll the completion queue without pause while an asynchronous call is outstanding (a CPU is spent on it,
    /// as SPDK does); sleep when none is. Lowest latency.
    /// </summary>
    Polled,

    /// <summary>Sleep on the queue's MSI-X vector until the controller signals; no CPU is spent waiting.</summary>
    Interrupt,

    /// <summary>Poll for <see cref="NvmeIoQueueOptions.HybridSpin"/> after the last completion, then sleep on the vector.</summary>
    Hybrid,
}

/// <summary>An active namespace: its ID and what Identify Namespace says about it.</summary>
/// <param name="Id">The namespace ID (NSID).</param>
/// <param name="Identify">Identify Namespace data.</param>
public sealed record NvmeNamespace(uint Id, IdentifyNamespace Identify)
{
    /// <summary>Bytes per logical block (LBAF[FLBAS].LBADS).</summary>
    public int BlockSize => Identify.BlockSize;

    /// <summary>Size in logical blocks (NSZE).</summary>
    public ulong BlockCount => Identify.SizeInBlocks;

    /// <summary>Size in bytes.</summary>
    public ulong SizeBytes => BlockCount * (ulong)BlockSize;
}
