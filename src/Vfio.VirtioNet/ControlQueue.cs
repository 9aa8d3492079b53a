using Vfio.Dma;
using Vfio.Spec.Virtio;
using Vfio.VirtioNet.Virtio;

namespace Vfio.VirtioNet;

public sealed partial class VirtioNetDevice
{
    /// <summary>
    /// Tells the device how many queue pairs to use (§5.1.6.5.5 "Automatic receive steering in multiqueue mode"):
    /// a command on the control queue, waited for by polling.
    /// </summary>
    private void SetQueuePairs(int pairs)
    {
        var control = _control!;
        // §5.1.6.5 "Control Virtqueue": class VIRTIO_NET_CTRL_MQ, command VQ_PAIRS_SET, le16 virtqueue_pairs.
        Span<byte> command = [VirtioNetControl.ClassMq, VirtioNetControl.MqVqPairsSet, (byte)pairs, (byte)(pairs >> 8)];
        byte ack = control.Execute(command, _time, TimeSpan.FromSeconds(5));
        if (ack != VirtioNetControl.Ok)
        {
            throw new VirtioNetException(Device.Address, $"the device refused VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET {pairs} (ack {ack})");
        }
    }

    /// <summary>The control virtqueue: one command at a time, header and data in one buffer, the ack byte in another.</summary>
    private sealed class ControlQueue(VirtioNetDevice owner, Queue queue) : IDisposable, IVirtqueueLeases
    {
        private DmaBuffer? _buffer;

        public Queue Queue { get; set; } = queue;

        public byte Execute(ReadOnlySpan<byte> command, TimeProvider time, TimeSpan timeout)
        {
            _buffer ??= owner.Device.Dma.Allocate(4096, new DmaAllocationOptions { Name = $"{owner.Device.Address} control commands" });
            if (command.Length > 2048) { throw new ArgumentException($"a {command.Length}-byte control command does not fit before the ack byte", nameof(command)); }
            var span = _buffer.Span;
            command.CopyTo(span);
            // After the longest command (RSS_CONFIG with a 512-entry table and a 255-byte key: 1,291 bytes).
            const int AckOffset = 2048;
            span[AckOffset] = 0xFF;
            var ring = Queue.Ring;
            ring.Leases ??= this;
            int head = ring.EnqueueChain(
            [
                new VirtqBuffer(_buffer.DeviceAddress, (uint)command.Length, DeviceWritable: false),
                new VirtqBuffer(_buffer.DeviceAddress + AckOffset, 1, DeviceWritable: true),
            ]);
            if (head < 0) { throw new VirtioNetException(owner.Device.Address, "the control queue is full"); }
            ring.Publish();
            // Control commands are rare: always ring, whatever the device's suppression flag says.
            owner._transport.Notify(Queue.Doorbell, Queue.Index);
            long start = time.GetTimestamp();
            while (ring.UsedCount() == 0)
            {
                if (time.GetElapsedTime(start) > timeout)
                {
                    throw new VirtioNetException(owner.Device.Address, $"the device did not answer a control command within {timeout.TotalSeconds} s");
                }
                Thread.Yield();
            }
            ring.TakeUsed(out _);
            return Volatile.Read(ref span[AckOffset]);
        }

        /// <summary>Every command leases the whole command buffer (the command, then the ack byte).</summary>
        public DmaWindow LeaseOf(int token) => _buffer is null ? default : DmaWindow.Whole(_buffer);

        public void Dispose()
        {
            Queue.Dispose();
            _buffer?.Dispose();
        }
    }
}
