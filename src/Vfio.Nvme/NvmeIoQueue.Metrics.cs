using System.Runtime.CompilerServices;
using Vfio.Spec.Nvme;

namespace Vfio.Nvme;

/// <summary>The queue's side of <see cref="NvmeTelemetry"/>: what one retired command records, off the hot path.</summary>
public sealed partial class NvmeIoQueue
{
    private KeyValuePair<string, object?>[]? _metricTags;
    private object? _metricQueueId;
    private string? _metricAddress;
    private uint _metricNsid;
    private int _metricBlockSize;

    /// <summary>The device and queue tags of this queue's measurements (allocated once).</summary>
    internal KeyValuePair<string, object?>[] MetricTags => _metricTags ??=
    [
        new(VfioTelemetry.PciAddressTag, MetricAddress),
        new(NvmeTelemetry.QueueIdTag, MetricQueueId),
    ];

    private string MetricAddress => _metricAddress ??= _controller.Device.Address.ToString();

    // Boxed once: a tag's value is an object, and boxing per measurement would allocate on every I/O.
    private object MetricQueueId => _metricQueueId ??= QueueId;

    /// <summary>
    /// Records a retired command (under the queue's lock, called only while <see cref="NvmeTelemetry.Recording"/>):
    /// one operation, its latency from <paramref name="submitted"/> (its doorbell) to <paramref name="retired"/> (the reap), its bytes when a read or write succeeded, or an
    /// error. Allocates nothing on success once the tags exist.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void RecordCompletion(in NvmeCommandInfo info, NvmeStatus status, long submitted, long retired)
    {
        var opcode = (NvmOpcode)info.Opcode;
        string operation = opcode == NvmOpcode.Read ? "read" : opcode == NvmOpcode.Write ? "write" : "other";
        bool ok = status.IsSuccess;
        var address = new KeyValuePair<string, object?>(VfioTelemetry.PciAddressTag, MetricAddress);
        var queue = new KeyValuePair<string, object?>(NvmeTelemetry.QueueIdTag, MetricQueueId);
        var op = new KeyValuePair<string, object?>(NvmeTelemetry.OperationTag, operation);
        var outcome = new KeyValuePair<string, object?>(NvmeTelemetry.OutcomeTag, ok ? "ok" : "error");
        NvmeTelemetry.Operations.Add(1, address, queue, op, outcome);
        if (NvmeTelemetry.Duration.Enabled)
        {
            NvmeTelemetry.Duration.Record(_controller.Time.GetElapsedTime(submitted, retired).TotalSeconds, address, queue, op, outcome);
        }
        if (!ok)
        {
            NvmeTelemetry.Errors.Add(1, address, queue, op,
                new KeyValuePair<string, object?>(NvmeTelemetry.ErrorTypeTag, $"{(int)status.Type:x}/{status.Code:x2}"));
        }
        else if (operation != "other" && NvmeTelemetry.Bytes.Enabled)
        {
            NvmeTelemetry.Bytes.Add((long)info.BlockCount * BlockSizeOf(info.Nsid), address, queue, op);
        }
    }

    /// <summary>The block size of namespace <paramref name="nsid"/>, remembered for the next command of the same namespace.</summary>
    private int BlockSizeOf(uint nsid)
    {
        if (nsid != _metricNsid || _metricBlockSize == 0)
        {
            _metricBlockSize = 0;
            foreach (var ns in _controller.Namespaces)
            {
                if (ns.Id == nsid) { _metricBlockSize = ns.BlockSize; break; }
            }
            _metricNsid = nsid;
        }
        return _metricBlockSize;
    }
}
