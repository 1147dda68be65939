//go:build !wasip1

// The proxy-wasm ABI v0.2.1 host functions; keep imports_wasip1.go in step.

package proxywasm

import "unsafe"

// Outside wasip1 (go vet, an editor, unit tests of plugin logic on the
// build machine) there is no host: every host function answers
// UNIMPLEMENTED and touches nothing.

const noHost = uint32(StatusUnimplemented)

func proxyLog(level uint32, message unsafe.Pointer, messageSize uint32) uint32 { return noHost }

func proxyGetLogLevel(returnLevel unsafe.Pointer) uint32 { return noHost }

func proxyGetCurrentTimeNanoseconds(returnTime unsafe.Pointer) uint32 { return noHost }

func proxySetTickPeriodMilliseconds(period uint32) uint32 { return noHost }

func proxyGetBufferBytes(bufferType uint32, start uint32, maxSize uint32, returnData unsafe.Pointer, returnSize unsafe.Pointer) uint32 {
	return noHost
}

func proxySetBufferBytes(bufferType uint32, start uint32, size uint32, data unsafe.Pointer, dataSize uint32) uint32 {
	return noHost
}

func proxyGetBufferStatus(bufferType uint32, returnSize unsafe.Pointer, returnFlags unsafe.Pointer) uint32 {
	return noHost
}

func proxyGetHeaderMapSize(mapType uint32, returnSize unsafe.Pointer) uint32 { return noHost }

func proxyGetHeaderMapPairs(mapType uint32, returnData unsafe.Pointer, returnSize unsafe.Pointer) uint32 {
	return noHost
}

func proxySetHeaderMapPairs(mapType uint32, data unsafe.Pointer, size uint32) uint32 { return noHost }

func proxyGetHeaderMapValue(mapType uint32, key unsafe.Pointer, keySize uint32, returnValue unsafe.Pointer, returnSize unsafe.Pointer) uint32 {
	return noHost
}

func proxyAddHeaderMapValue(mapType uint32, key unsafe.Pointer, keySize uint32, value unsafe.Pointer, valueSize uint32) uint32 {
	return noHost
}

func proxyReplaceHeaderMapValue(mapType uint32, key unsafe.Pointer, keySize uint32, value unsafe.Pointer, valueSize uint32) uint32 {
	return noHost
}

func proxyRemoveHeaderMapValue(mapType uint32, key unsafe.Pointer, keySize uint32) uint32 {
	return noHost
}

func proxyContinueStream(streamType uint32) uint32 { return noHost }

func proxyCloseStream(streamType uint32) uint32 { return noHost }

func proxyGetStatus(returnCode unsafe.Pointer, returnMessage unsafe.Pointer, returnMessageSize unsafe.Pointer) uint32 {
	return noHost
}

func proxySendLocalResponse(statusCode uint32, details unsafe.Pointer, detailsSize uint32, body unsafe.Pointer, bodySize uint32, headers unsafe.Pointer, headersSize uint32, grpcStatus uint32) uint32 {
	return noHost
}

func proxyHttpCall(upstream unsafe.Pointer, upstreamSize uint32, headers unsafe.Pointer, headersSize uint32, body unsafe.Pointer, bodySize uint32, trailers unsafe.Pointer, trailersSize uint32, timeout uint32, returnCallID unsafe.Pointer) uint32 {
	return noHost
}

func proxyGrpcCall(upstream unsafe.Pointer, upstreamSize uint32, service unsafe.Pointer, serviceSize uint32, method unsafe.Pointer, methodSize uint32, metadata unsafe.Pointer, metadataSize uint32, message unsafe.Pointer, messageSize uint32, timeout uint32, returnCallID unsafe.Pointer) uint32 {
	return noHost
}

func proxyGrpcStream(upstream unsafe.Pointer, upstreamSize uint32, service unsafe.Pointer, serviceSize uint32, method unsafe.Pointer, methodSize uint32, metadata unsafe.Pointer, metadataSize uint32, returnStreamID unsafe.Pointer) uint32 {
	return noHost
}

func proxyGrpcSend(streamID uint32, message unsafe.Pointer, messageSize uint32, endOfStream uint32) uint32 {
	return noHost
}

func proxyGrpcCancel(callID uint32) uint32 { return noHost }

func proxyGrpcClose(callID uint32) uint32 { return noHost }

func proxySetSharedData(key unsafe.Pointer, keySize uint32, value unsafe.Pointer, valueSize uint32, cas uint32) uint32 {
	return noHost
}

func proxyGetSharedData(key unsafe.Pointer, keySize uint32, returnValue unsafe.Pointer, returnSize unsafe.Pointer, returnCas unsafe.Pointer) uint32 {
	return noHost
}

func proxyRegisterSharedQueue(name unsafe.Pointer, nameSize uint32, returnQueueID unsafe.Pointer) uint32 {
	return noHost
}

func proxyResolveSharedQueue(vmID unsafe.Pointer, vmIDSize uint32, name unsafe.Pointer, nameSize uint32, returnQueueID unsafe.Pointer) uint32 {
	return noHost
}

func proxyEnqueueSharedQueue(queueID uint32, value unsafe.Pointer, valueSize uint32) uint32 {
	return noHost
}

func proxyDequeueSharedQueue(queueID uint32, returnValue unsafe.Pointer, returnSize unsafe.Pointer) uint32 {
	return noHost
}

func proxyDefineMetric(metricType uint32, name unsafe.Pointer, nameSize uint32, returnMetricID unsafe.Pointer) uint32 {
	return noHost
}

func proxyRecordMetric(metricID uint32, value uint64) uint32 { return noHost }

func proxyIncrementMetric(metricID uint32, delta int64) uint32 { return noHost }

func proxyGetMetric(metricID uint32, returnValue unsafe.Pointer) uint32 { return noHost }

func proxyGetProperty(path unsafe.Pointer, pathSize uint32, returnValue unsafe.Pointer, returnSize unsafe.Pointer) uint32 {
	return noHost
}

func proxySetProperty(path unsafe.Pointer, pathSize uint32, value unsafe.Pointer, valueSize uint32) uint32 {
	return noHost
}

func proxyCallForeignFunction(name unsafe.Pointer, nameSize uint32, arguments unsafe.Pointer, argumentsSize uint32, returnResults unsafe.Pointer, returnSize unsafe.Pointer) uint32 {
	return noHost
}

func proxyDone() uint32 { return noHost }

func proxySetEffectiveContext(contextID uint32) uint32 { return noHost }
